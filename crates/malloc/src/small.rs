//! The small heap: the first blocks of every slab class, packed together.
//!
//! A slab class costs a resident page as soon as it holds one object: the
//! slab's header and its first objects share the slab's first page, and a
//! second class cannot use it. A small program (`git status`, a compiler
//! pass, a shell tool) uses most of the shared heap's classes for a few
//! blocks each, so a page per class was most of what its heap made
//! resident beyond glibc's, which packs blocks of every size side by side.
//!
//! So a class starts *cold*: its requests are served, with the shim's
//! header, from this small best-fit heap, where blocks of every size lie
//! next to each other, until the class has served [`COLD_BYTES`] this way
//! (its blocks and their overhead). From then on the class is *warm* for
//! good and its blocks are bare slab objects through the thread caches, as
//! before. A class a program uses heavily pays a few dozen slower calls
//! (each takes the shared heap's lock) at its start; one it uses a little
//! never gets a slab.
//!
//! The small heap takes its regions from the shim's reservation itself
//! (so every block of the shim lies in it, which `free` relies on), and it
//! is used only under the shared heap's lock (MALLOC-C1), which also
//! covers it across `fork`.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

use freespace::stacks::GENERAL_CLASSES;
use freespace::BestFitHeap;
use freespace_source::Mmap;

use crate::header::HEADER;

/// Bytes a slab class serves from the small heap before it is warm: its
/// blocks' sizes plus 32 bytes each (the shim's header and the heap's
/// chunk header), about two pages' worth (what its first slab would make
/// resident, at most, for as many blocks).
///
/// ```
/// assert_eq!(freespace_malloc::small::COLD_BYTES, 8 * 1024);
/// ```
pub const COLD_BYTES: usize = 8 * 1024;

/// What a block of the small heap costs besides its class's size: the
/// shim's header and the heap's own chunk header ([`COLD_BYTES`] counts
/// it).
const OVERHEAD: usize = 2 * HEADER;

/// The small heap's type: a best-fit heap over the shim's reservation.
pub type SmallHeap = BestFitHeap<&'static Mmap>;

/// Per class of the shared heap's slab ([`GENERAL_CLASSES`]), the bytes
/// its requests have taken from the small heap (sizes plus overhead).
static SERVED: [AtomicUsize; GENERAL_CLASSES.len()] =
    [const { AtomicUsize::new(0) }; GENERAL_CLASSES.len()];

/// Whether a request of `size` bytes (a bare one: `size <= BARE_MAX`)
/// goes to the small heap: its slab class is still cold. Counts it as
/// served if so. Two threads may both get a cold answer for the last
/// cold block of a class; the count only decides where blocks come from.
///
/// ```
/// use freespace_malloc::small::{admits, COLD_BYTES};
/// // The 496-byte requests of this example's class: a few, then never.
/// let cold = (0..100).take_while(|_| admits(496)).count();
/// assert!(cold <= COLD_BYTES / 512);
/// assert!(!admits(496));
/// ```
pub fn admits(size: usize) -> bool {
    let class = GENERAL_CLASSES.partition_point(|&c| c < size.max(1));
    let Some(&class_size) = GENERAL_CLASSES.get(class) else {
        return false;
    };
    SERVED[class].load(Ordering::Relaxed) < COLD_BYTES
        && SERVED[class].fetch_add(class_size + OVERHEAD, Ordering::Relaxed) < COLD_BYTES
}

/// The small heap's storage.
///
/// # Invariants
/// - MALLOC-C1: the heap is used only by a thread that holds the shared
///   heap's lock ([`crate::shared`]`().lock()`): every access goes through
///   [`heap`], whose callers hold it.
struct Small(UnsafeCell<SmallHeap>);

// SAFETY: MALLOC-C1: the shared heap's lock admits one thread at a time,
// so the heap (`!Sync`) is never used by two threads at once; what it
// holds are pointers into the shim's reservation, which any thread may
// use.
unsafe impl Sync for Small {}

static SMALL: Small = Small(UnsafeCell::new(BestFitHeap::new(&crate::shim::MMAP)));

/// The small heap.
///
/// # Safety
/// The calling thread holds the shared heap's lock for as long as it uses
/// the reference (MALLOC-C1).
pub(crate) unsafe fn heap<'a>() -> &'a SmallHeap {
    // SAFETY: MALLOC-C1, upheld by the caller; only shared references are
    // made (the heap's state is behind its own cell).
    unsafe { &*SMALL.0.get() }
}

/// Makes every class warm (tests about slab objects: their first blocks
/// would come from the small heap otherwise).
#[cfg(test)]
pub(crate) fn warm_all() {
    for served in &SERVED {
        served.store(COLD_BYTES, Ordering::Relaxed);
    }
}

/// Makes every class cold again (tests of the small heap).
#[cfg(test)]
pub(crate) fn cool_all() {
    for served in &SERVED {
        served.store(0, Ordering::Relaxed);
    }
}
