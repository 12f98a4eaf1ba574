//! Memory under hostile input and per listed chunk, measured by this binary's counting
//! allocator: bytes held per thread (now and at the peak), and the allocations made by the
//! threads a test marks as counted (so tests running beside it do not add to its count).

mod hostile;
mod listing_alloc;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

static COUNTED_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn grow(by: usize, counts_as_allocation: bool) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + by;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
    if counts_as_allocation && COUNTED.try_with(Cell::get).unwrap_or(false) {
        COUNTED_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping
// allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size(), true);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(layout.size())));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(layout.size())));
        grow(new_size, true);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most the current thread had allocated at once while `f` ran, above what it held before.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, PEAK.with(Cell::get) - base)
}

/// Marks the current thread's allocations as counted by [`counted_allocations`] (a runtime's
/// `on_thread_start` marks its workers).
fn counting_thread() {
    COUNTED.with(|c| c.set(true));
}

fn counted_allocations() -> u64 {
    COUNTED_ALLOCATIONS.load(Ordering::Relaxed)
}
