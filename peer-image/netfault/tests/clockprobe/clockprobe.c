/* A static (musl) clock probe for `netfault clock` tests: every 100 ms a new thread reads the wall
 * clock four ways and the monotonic clock, and prints one line:
 *   <clock_gettime REALTIME ns> <REALTIME_COARSE ns> <gettimeofday us> <time s> <MONOTONIC ns> <slept ms>
 * where <slept ms> is how long a 100 ms nanosleep on the monotonic clock took (timers on time).
 * Build: musl-gcc -static -O2 -pthread -o clockprobe clockprobe.c */
#include <pthread.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

static long long ns(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *sample(void *slept) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    printf("%lld %lld %lld %lld %lld %lld\n", ns(CLOCK_REALTIME), ns(CLOCK_REALTIME_COARSE),
           tv.tv_sec * 1000000LL + tv.tv_usec, (long long)time(NULL), ns(CLOCK_MONOTONIC),
           *(long long *)slept);
    fflush(stdout);
    return NULL;
}

int main(void) {
    long long slept = 0;
    for (;;) {
        pthread_t t;
        pthread_create(&t, NULL, sample, &slept);
        pthread_join(t, NULL);
        long long before = ns(CLOCK_MONOTONIC);
        struct timespec d = {0, 100000000};
        clock_nanosleep(CLOCK_MONOTONIC, 0, &d, NULL);
        slept = (ns(CLOCK_MONOTONIC) - before) / 1000000;
    }
}
