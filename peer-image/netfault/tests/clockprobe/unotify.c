/* Cost of a clock_gettime answered through seccomp user notification (SECCOMP_RET_USER_NOTIF), the
 * alternative to vDSO patching: the filtered thread's call goes to a supervisor thread, which writes
 * the timespec and answers. Compared with the plain system call. gcc -O2 -pthread unotify.c */
#define _GNU_SOURCE
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int listener = -1;
static long long now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }

static void *supervise(void *arg) {
    (void)arg;
    struct seccomp_notif req; struct seccomp_notif_resp resp;
    for (;;) {
        while (listener < 0) usleep(100);
        memset(&req, 0, sizeof req);
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) != 0) continue;
        struct timespec *ts = (struct timespec *)req.data.args[1];
        syscall(SYS_clock_gettime, (clockid_t)req.data.args[0], ts); /* same process: write directly */
        ts->tv_sec += 3600;
        memset(&resp, 0, sizeof resp);
        resp.id = req.id; resp.val = 0; resp.error = 0;
        ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
    }
    return NULL;
}

int main(void) {
    const int N = 200000;
    struct timespec ts;
    long long t0 = now();
    for (int i = 0; i < N; i++) syscall(SYS_clock_gettime, CLOCK_REALTIME, &ts);
    double sys = (double)(now() - t0) / N;
    t0 = now();
    for (int i = 0; i < N; i++) clock_gettime(CLOCK_REALTIME, &ts);
    double vdso = (double)(now() - t0) / N;
    pthread_t th; pthread_create(&th, NULL, supervise, NULL);
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clock_gettime, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {4, f};
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    int fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    if (fd < 0) { perror("seccomp"); return 1; }
    listener = fd;
    struct timespec real; syscall(SYS_clock_gettime, CLOCK_REALTIME, &ts); clock_gettime(CLOCK_REALTIME_COARSE, &real);
    const int M = 20000;
    t0 = now();
    for (int i = 0; i < M; i++) syscall(SYS_clock_gettime, CLOCK_REALTIME, &ts);
    double notif = (double)(now() - t0) / M;
    printf("vdso %.1f ns, syscall %.1f ns, seccomp user notification %.1f ns (skew seen: %ld s)\n", vdso, sys, notif, (long)(ts.tv_sec - real.tv_sec));
    return 0;
}
