//! [`Rng`]: the small, seeded generator the tests, benchmarks, examples and
//! the demo draw their workloads from, so the same seed gives the same
//! workload everywhere (xorshift64*, Vigna 2016).

/// A seeded xorshift64* generator: fast, repeatable, not for cryptography.
///
/// ```
/// use freespace_testkit::Rng;
/// let mut a = Rng::new(7);
/// let mut b = Rng::new(7);
/// assert_eq!(a.next(), b.next());
/// assert!(a.below(10) < 10);
/// assert!((16..=32).contains(&a.range(16, 32)));
/// ```
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed` (0 is replaced: xorshift would stay 0).
    pub const fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// A generator for `seed` spread by splitmix64 first, so that nearby
    /// seeds (trial 0, 1, 2, …) start from unrelated states; any seed, 0
    /// included. The benchmarks' workloads are drawn from these.
    ///
    /// ```
    /// use freespace_testkit::Rng;
    /// let (mut a, mut b) = (Rng::spread(1), Rng::spread(2));
    /// assert_ne!(a.next(), b.next());
    /// assert_eq!(Rng::spread(0).next(), Rng::spread(0).next());
    /// ```
    pub const fn spread(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // Odd, so never 0 (xorshift would stay 0).
        Self(z | 1)
    }

    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A number in `[0, 1)`, with 53 random bits.
    ///
    /// ```
    /// let u = freespace_testkit::Rng::new(5).unit();
    /// assert!((0.0..1.0).contains(&u));
    /// ```
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A number in `lo..=hi` (`lo <= hi`).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
}
