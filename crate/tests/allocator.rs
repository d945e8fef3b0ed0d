//! `device::tune_allocator` as the `fastvision` binary uses it: called first thing in `main`, on
//! the main thread, before any other thread starts. No test harness (Cargo.toml), so this runs
//! as a program does rather than on one of libtest's threads, which have heaps of their own.

use tch::{Device, Kind, Tensor};

/// Bytes glibc holds in blocks mapped on their own (`hblkhd`): each such block is unmapped on
/// free and faulted in afresh when the next training step allocates it again.
fn mapped() -> usize {
    // SAFETY: mallinfo2 only reads glibc's counters.
    unsafe { libc::mallinfo2() }.hblkhd
}

/// A 100 MB tensor (larger than glibc's largest mmap threshold, 32 MiB), made on `thread`'s
/// side; returns the bytes newly mapped on their own while it lived.
fn newly_mapped_for_a_large_tensor() -> usize {
    let before = mapped();
    let t = Tensor::ones([25_000_000], (Kind::Float, Device::Cpu));
    let during = mapped();
    assert_eq!(t.sum(Kind::Double).double_value(&[]), 25e6);
    during.saturating_sub(before)
}

fn main() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        fastvision::device::tune_allocator();
        let on_main = newly_mapped_for_a_large_tensor();
        // A thread started afterwards, as the data loader's are, shares the main heap.
        let on_thread = std::thread::spawn(newly_mapped_for_a_large_tensor)
            .join()
            .expect("the thread ran");
        for (who, bytes) in [("the main thread", on_main), ("a later thread", on_thread)] {
            assert!(
                bytes < 32 << 20,
                "a 100 MB tensor made on {who} was mapped on its own ({bytes} bytes): glibc \
                 would fault it in again on every training step"
            );
        }
        println!("test tune_allocator_keeps_large_tensors_on_the_heap ... ok");
    }
}
