//! `device::tune_allocator` as the `fastvision` binary uses it: called first thing in `main`, on
//! the main thread, before any other thread starts. No test harness (Cargo.toml), so this runs
//! as a program does rather than on one of libtest's threads, which have heaps of their own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
use tch::{Device, Kind, Tensor};

/// Bytes in each large block the test asks for.
const LARGE: i64 = 1_500_000_000;

/// glibc's counters (`mallinfo2`): `hblkhd`, the bytes in blocks mapped on their own (each is
/// unmapped on free and faulted in afresh when the next training step allocates it again), and
/// `arena`, the bytes of heap glibc holds (it shrinks when the heap's free top is trimmed).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn counters() -> libc::mallinfo2 {
    // SAFETY: mallinfo2 only reads glibc's counters.
    unsafe { libc::mallinfo2() }
}

/// A tensor of `LARGE` bytes, larger than glibc's largest automatic mmap threshold (32 MiB)
/// and than one of its other arenas' heaps (64 MiB), as a batch or a step's activations are;
/// made on the calling thread and left untouched, so only address space is taken. Returns the
/// bytes newly mapped on their own while it lived.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn mapped_for_a_large_tensor() -> usize {
    let before = counters().hblkhd;
    let t = Tensor::empty([LARGE / 4], (Kind::Float, Device::Cpu));
    let during = counters().hblkhd;
    assert_eq!(t.numel() * 4, LARGE as usize);
    during.saturating_sub(before)
}

/// The heap glibc still holds after a block of `LARGE` bytes, the heap's last, is freed: with
/// any trim threshold but "never" (`mallopt` takes at most 2 GiB) glibc would hand it back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_after_freeing_its_top() -> usize {
    // SAFETY: a plain malloc and free of the same pointer; the block is never read or written.
    unsafe {
        // black_box: the compiler would otherwise drop a malloc and free of an unused block.
        let block = std::hint::black_box(libc::malloc(LARGE as usize));
        assert!(!block.is_null(), "malloc({LARGE}) failed");
        libc::free(std::hint::black_box(block));
    }
    counters().arena
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn main() {
    fastvision::device::tune_allocator();
    // First, while the heap's top is the last thing on it.
    let heap_after = heap_after_freeing_its_top();
    assert!(
        heap_after >= LARGE as usize,
        "glibc holds {heap_after} bytes of heap once a {LARGE}-byte block is freed: the heap was \
         trimmed, and the next step would fault that memory in again"
    );
    let mapped_on_main = mapped_for_a_large_tensor();
    // A thread started afterwards, as the data loader's are, shares the main heap.
    let mapped_on_thread = std::thread::spawn(mapped_for_a_large_tensor)
        .join()
        .expect("the thread ran");
    for (who, bytes) in [
        ("the main thread", mapped_on_main),
        ("a later thread", mapped_on_thread),
    ] {
        assert!(
            bytes < 32 << 20,
            "a {LARGE}-byte tensor made on {who} was mapped on its own ({bytes} bytes): glibc \
             would fault it in again on every training step"
        );
    }
    // The notebook kernel gets the same settings from its spec.
    let kernel_sh = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kernel.sh"),
    )
    .expect("scripts/kernel.sh");
    assert!(
        kernel_sh.contains(&format!(
            "\"GLIBC_TUNABLES\": \"{}\"",
            fastvision::device::GLIBC_TUNABLES
        )),
        "scripts/kernel.sh must give the kernel device::GLIBC_TUNABLES, tune_allocator's settings"
    );
    println!("test tune_allocator_keeps_large_tensors_on_the_heap ... ok");
    println!("test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
}

/// glibc's allocator settings exist only on Linux with glibc: elsewhere there is nothing to check.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn main() {
    println!("test result: ok. 0 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out");
}
