//! The cost of a faked clock read against a true one (`netfault clock`'s trampoline): the page
//! built for this very process, called directly, against the vDSO (through libc) and against the
//! `clock_gettime` system call (the floor of any syscall-based approach, such as hiding the vDSO
//! and answering through seccomp). Run: `cargo bench -p netfault --bench clock`.

use std::hint::black_box;
use std::time::Instant;

use netfault::trampoline::{LocalPage, Offset};

const CALLS: u32 = 2_000_000;

fn per_call(mut f: impl FnMut()) -> f64 {
    for _ in 0..CALLS / 10 {
        f();
    }
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..CALLS {
            f();
        }
        best = best.min(t.elapsed().as_nanos() as f64 / CALLS as f64);
    }
    best
}

fn main() {
    let page = LocalPage::load(Offset::from_nanos(3_600_000_000_000)).expect("page");
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
    println!("{:<44} {:>9}", "call", "ns/call");
    for (name, id) in [
        ("CLOCK_REALTIME", libc::CLOCK_REALTIME),
        ("CLOCK_MONOTONIC", libc::CLOCK_MONOTONIC),
    ] {
        // SAFETY: valid timespec pointers; the page's function has clock_gettime's signature.
        let vdso = per_call(|| unsafe {
            libc::clock_gettime(black_box(id), &mut ts);
        });
        let fake = per_call(|| unsafe {
            (page.clock_gettime)(black_box(id), &mut ts);
        });
        let sys = per_call(|| unsafe {
            libc::syscall(libc::SYS_clock_gettime, black_box(id), &mut ts);
        });
        println!("{:<44} {vdso:>9.1}", format!("clock_gettime({name}), true (vDSO)"));
        println!("{:<44} {fake:>9.1}", format!("clock_gettime({name}), trampoline"));
        println!("{:<44} {sys:>9.1}", format!("clock_gettime({name}), system call"));
    }
    // SAFETY: valid pointers.
    let vdso = per_call(|| unsafe {
        libc::gettimeofday(&mut tv, std::ptr::null_mut());
    });
    let fake = per_call(|| unsafe {
        (page.gettimeofday)(&mut tv, std::ptr::null_mut());
    });
    println!("{:<44} {vdso:>9.1}", "gettimeofday, true (vDSO)");
    println!("{:<44} {fake:>9.1}", "gettimeofday, trampoline");
    let vdso = per_call(|| unsafe {
        libc::time(std::ptr::null_mut());
    });
    let fake = per_call(|| unsafe {
        (page.time)(std::ptr::null_mut());
    });
    println!("{:<44} {vdso:>9.1}", "time, true (vDSO)");
    println!("{:<44} {fake:>9.1}", "time, trampoline");
}
