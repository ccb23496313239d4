//! The one place the crate chooses between real and modelled concurrency
//! primitives.
//!
//! Under `--cfg loom` every cell the crate shares between threads comes
//! from [loom](https://docs.rs/loom), so the models in `tests/loom.rs`
//! explore every interleaving of them; otherwise they are `core`'s. No other
//! module names `core::cell::UnsafeCell` for state shared between threads.
//! The locks (`freespace_core::lock`) make the same choice for their
//! atomics.
//!
//! loom's `UnsafeCell` hands out tracked pointers ([`MutPtr`]) so that two
//! threads holding a `&mut` to the same data at once is reported as a data
//! race; the `core` version below has the same shape and compiles to a plain
//! pointer.

#[cfg(loom)]
pub(crate) use loom::cell::{MutPtr, UnsafeCell};

#[cfg(not(loom))]
pub(crate) use cell::{MutPtr, UnsafeCell};

#[cfg(not(loom))]
mod cell {
    /// `core::cell::UnsafeCell` with loom's API (`get_mut` gives a
    /// [`MutPtr`], `with_mut` a raw pointer), so code written once runs
    /// under both.
    #[derive(Debug)]
    #[repr(transparent)]
    pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        #[inline]
        pub(crate) const fn new(data: T) -> Self {
            Self(core::cell::UnsafeCell::new(data))
        }

        #[inline]
        pub(crate) fn into_inner(self) -> T {
            self.0.into_inner()
        }

        #[inline]
        pub(crate) fn get_mut(&self) -> MutPtr<T> {
            MutPtr(self.0.get())
        }

        #[inline]
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }

    /// A pointer to the inside of an [`UnsafeCell`]; loom tracks its lifetime
    /// as a write access, here it is only the pointer.
    #[derive(Debug)]
    pub(crate) struct MutPtr<T>(*mut T);

    impl<T> MutPtr<T> {
        /// # Safety
        ///
        /// As for dereferencing the raw pointer: no other reference to the
        /// cell's contents may be live while the returned one is.
        #[inline]
        #[allow(clippy::mut_from_ref)]
        pub(crate) unsafe fn deref(&self) -> &mut T {
            // SAFETY: forwarded to the caller.
            unsafe { &mut *self.0 }
        }
    }
}
