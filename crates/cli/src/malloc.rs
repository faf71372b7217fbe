//! How many heaps glibc's malloc keeps: one per core instead of eight.
//!
//! glibc gives threads their own heaps ("arenas", up to eight per core) and returns memory to
//! the system only from the top of each. A hub's threads are its runtime workers and a pool of
//! blocking threads for history reads; after a reconnection wave, in which thousands of
//! subscribers resume with `Last-Event-ID` on those threads, each arena kept what it had held.
//! In the soak (docs/benchmarks.md, "Soak"), the process grew with every wave although the heap
//! in use stayed flat (heaptrack: a peak of 13 MB, 68 KB not freed at exit, after 105,000
//! reconnections), and with two arenas instead of sixteen it grew a quarter as much.
//!
//! So `herald serve` caps the arenas at the number of cores (at least two), the setting that
//! Java and Ruby deployments use for the same reason, unless the operator chose a value with
//! `MALLOC_ARENA_MAX` or `GLIBC_TUNABLES`. Other C libraries (musl) have no per-thread arenas:
//! nothing to do there.

/// Caps malloc's arenas, before the runtime starts any thread.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn limit_arenas() {
    let chosen = |name: &str| std::env::var_os(name).is_some();
    if chosen("MALLOC_ARENA_MAX") || chosen("GLIBC_TUNABLES") {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arenas = i32::try_from(cores.max(2)).unwrap_or(i32::MAX);
    // The second unsafe block of the workspace (the other is in the benchmark tool): this glibc
    // setting has no safe API.
    // SAFETY: mallopt only changes an allocator parameter and may be called at any time; it is
    // called before other threads exist.
    #[allow(unsafe_code)]
    let _ = unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
}

/// Caps malloc's arenas: nothing to do with this C library.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn limit_arenas() {}
