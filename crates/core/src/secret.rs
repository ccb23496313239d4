//! Secrets for header check values: where a heap's key comes from.
//!
//! A heap that stamps its headers with a check value (the free-list heap's
//! magic number) keys that value by a secret, so that user data cannot
//! *forge* a header: without the key, a header-shaped value written into a
//! block passes the check only by chance. The key is drawn once per heap,
//! when its first region is set up (constructors stay `const` and do no
//! work), from one of the [`KeySource`]s:
//!
//! | [`KeySource`] | where the secret comes from | secret? |
//! |---|---|---|
//! | [`Os`](KeySource::Os) (what `new` uses) | Linux/Android: `getrandom(2)`, else the kernel's 16 random bytes at exec (`AT_RANDOM`, mixed with a per-heap counter); other Unix: `getentropy(3)`; elsewhere: addresses only | yes where the OS gives randomness; **no** on targets without one (bare metal): use a seed there |
//! | [`Seed`](KeySource::Seed) (`with_seed`) | the caller's 64-bit seed, mixed | as secret as the seed: pass one from a hardware RNG on `no_std`, or a constant where a test wants the same key every run |
//!
//! [`os_random`] is the raw OS draw; [`KeySource::key`] turns a source into
//! a key. Nothing here allocates, so a key can be drawn from inside a
//! `#[global_allocator]`.

use core::sync::atomic::{AtomicUsize, Ordering};

/// Where a heap's header key comes from (see the [module docs](self)).
///
/// ```
/// use freespace_core::secret::KeySource;
/// // A seed gives the same key every time (determinism for tests)…
/// assert_eq!(KeySource::Seed(7).key(0x1000), KeySource::Seed(7).key(0x9000));
/// assert_ne!(KeySource::Seed(7).key(0x1000), KeySource::Seed(8).key(0x1000));
/// // …the OS source a fresh one per heap, never 0.
/// assert_ne!(KeySource::Os.key(0x1000), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// Draw the key from the operating system when the first region is set
    /// up ([`os_random`]); where there is no OS source, derive it from
    /// addresses (not secret).
    Os,
    /// Derive the key from this seed alone: the same seed, the same key.
    /// Secret exactly as far as the seed is.
    Seed(u64),
}

impl KeySource {
    /// A non-zero key for a heap whose first region starts at
    /// `region_addr` (only mixed in when there is no better secret).
    ///
    /// ```
    /// use freespace_core::secret::KeySource;
    /// let a = KeySource::Os.key(0x1000);
    /// let b = KeySource::Os.key(0x1000);
    /// assert_ne!(a, b, "each draw is fresh");
    /// ```
    pub fn key(self, region_addr: usize) -> usize {
        let raw = match self {
            KeySource::Seed(seed) => return key_from_seed(seed),
            KeySource::Os => match os_random() {
                Some(r) => r,
                // No OS randomness: addresses and a counter at least make
                // heaps differ (and ASLR, where there is any, unpredictable).
                None => {
                    let local = 0u8;
                    mix(region_addr as u64
                        ^ mix(core::ptr::addr_of!(local).addr() as u64)
                        ^ mix(next_count()))
                }
            },
        };
        fold(raw)
    }
}

/// The key [`KeySource::Seed`]`(seed)` gives, computed at compile time if
/// need be (a heap built with a seed has its key from its `const`
/// constructor on). Non-zero.
///
/// ```
/// use freespace_core::secret::{key_from_seed, KeySource};
/// const KEY: usize = key_from_seed(42);
/// assert_eq!(KEY, KeySource::Seed(42).key(0x1000));
/// assert_ne!(KEY, 0);
/// ```
pub const fn key_from_seed(seed: u64) -> usize {
    fold(mix(seed ^ 0x6672_6565_7370_6163))
}

/// A 64-bit secret folded into a non-zero word: 0 means "not drawn yet" to
/// the heaps, so it is replaced (probability 2^-64 for a random secret).
const fn fold(raw: u64) -> usize {
    let folded = if usize::BITS >= 64 {
        raw as usize
    } else {
        (raw ^ (raw >> 32)) as usize
    };
    if folded == 0 {
        0x005E_C2E7
    } else {
        folded
    }
}

/// 64 random bits from the operating system, or `None` where there is no
/// source (or it failed).
///
/// Linux and Android: `getrandom(2)` (non-blocking); if that fails (an old
/// kernel, a seccomp filter), the 16 bytes the kernel placed at exec
/// (`AT_RANDOM`) mixed with a per-call counter, so two heaps still get
/// different keys. Other Unix: `getentropy(3)`. Other targets: `None`.
///
/// ```
/// # #[cfg(target_os = "linux")] {
/// let a = freespace_core::secret::os_random().unwrap();
/// let b = freespace_core::secret::os_random().unwrap();
/// assert_ne!(a, b);
/// # }
/// ```
pub fn os_random() -> Option<u64> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut buf = [0u8; 8];
        // SAFETY: `buf` is writable for its 8 bytes; `getrandom` writes at
        // most that many and does not allocate.
        let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
        if n == 8 {
            return Some(u64::from_ne_bytes(buf));
        }
        at_random()
    }
    #[cfg(all(
        unix,
        not(any(target_os = "linux", target_os = "android")),
        any(
            target_vendor = "apple",
            target_os = "freebsd",
            target_os = "openbsd",
            target_os = "netbsd",
            target_os = "dragonfly",
            target_os = "illumos",
            target_os = "solaris"
        )
    ))]
    {
        let mut buf = [0u8; 8];
        // SAFETY: `buf` is writable for its 8 bytes (at most 256 may be asked).
        let rc = unsafe { libc::getentropy(buf.as_mut_ptr().cast(), buf.len()) };
        (rc == 0).then(|| u64::from_ne_bytes(buf))
    }
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        all(
            unix,
            any(
                target_vendor = "apple",
                target_os = "freebsd",
                target_os = "openbsd",
                target_os = "netbsd",
                target_os = "dragonfly",
                target_os = "illumos",
                target_os = "solaris"
            )
        )
    )))]
    {
        None
    }
}

/// The `AT_RANDOM` fallback: the kernel's exec-time bytes, mixed with a
/// counter so that each call differs.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[cfg_attr(miri, allow(dead_code))]
fn at_random() -> Option<u64> {
    #[cfg(miri)]
    {
        // Miri has no auxiliary vector.
        None
    }
    #[cfg(not(miri))]
    {
        // SAFETY: `getauxval` has no preconditions; `AT_RANDOM` is the
        // address of 16 bytes the kernel placed on the initial stack, valid
        // for the life of the process (or 0 where there are none).
        let random = unsafe { libc::getauxval(libc::AT_RANDOM) } as *const u64;
        if random.is_null() {
            return None;
        }
        // SAFETY: as above; read unaligned, the kernel promises no alignment.
        let (a, b) = unsafe { (random.read_unaligned(), random.add(1).read_unaligned()) };
        Some(mix(a ^ mix(b ^ next_count())))
    }
}

/// A process-wide counter, so that draws without fresh randomness differ.
fn next_count() -> u64 {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    COUNT.fetch_add(1, Ordering::Relaxed) as u64
}

/// SplitMix64's finaliser: a bijection of `u64` that spreads every input
/// bit over the output.
///
/// ```
/// use freespace_core::secret::mix;
/// assert_ne!(mix(1), mix(2));
/// assert_eq!(mix(0), 0);
/// ```
#[inline]
pub const fn mix(x: u64) -> u64 {
    let x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_keys_differ_and_are_not_derived_from_the_address() {
        let a = KeySource::Os.key(0x4000);
        let b = KeySource::Os.key(0x4000);
        assert_ne!(a, b);
        assert_ne!(a, 0);
    }

    #[test]
    fn seeded_keys_are_deterministic() {
        assert_eq!(KeySource::Seed(1).key(1), KeySource::Seed(1).key(2));
        assert_ne!(KeySource::Seed(1).key(1), KeySource::Seed(2).key(1));
        assert_ne!(KeySource::Seed(0).key(1), 0);
    }

    #[cfg(all(target_os = "linux", not(miri)))]
    #[test]
    fn at_random_fallback_differs_per_call() {
        let a = at_random().unwrap();
        let b = at_random().unwrap();
        assert_ne!(a, b);
    }
}
