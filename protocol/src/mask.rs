//! Payload masking (RFC 6455 §5.3): a scalar reference and a fast path.
//!
//! The fast path XORs the payload with the 4-byte key repeated to the width of the widest vector
//! the CPU has: AVX-512 (64 bytes), AVX2 (32) or SSE2 (16) on x86_64, chosen at run time once and
//! cached in an atomic; elsewhere a portable u128 loop. Every width is a multiple of 4, so the key
//! phase never changes inside the wide loops; `phase` only rotates the key once at the start.
//! This is the crate's only `unsafe` code.

/// Masks (or unmasks: XOR is its own inverse) `buf` in place with the fast path.
///
/// `phase` is the offset of `buf[0]` within the frame payload, so a payload that arrives in
/// several reads can be unmasked piece by piece: pass the number of payload bytes before this
/// piece (only `phase % 4` matters).
#[inline]
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], phase: usize) {
    let key = rotated_key(mask, phase);
    // Short payloads skip the dispatch: a few u128 words beat a call and a masked vector.
    if buf.len() < 64 {
        mask_portable(buf, key);
    } else {
        imp::mask(buf, key);
    }
}

/// The reference implementation: a genuine byte-at-a-time loop.
///
/// Left alone, LLVM unrolls a byte loop like this by four and merges the four byte XORs into
/// one u32 XOR (seen in the disassembly), which would make it a word loop. The
/// `compiler_fence` after each byte emits no instruction but forbids merging or reordering
/// memory accesses across it, so the optimized loop is one byte load/XOR/store per element and
/// cannot be vectorized. `#[inline(never)]` keeps it out of its callers.
#[inline(never)]
pub fn apply_mask_scalar(buf: &mut [u8], mask: [u8; 4], phase: usize) {
    let mut key = u32::from_le_bytes(rotated_bytes(mask, phase));
    for b in buf.iter_mut() {
        *b ^= key as u8;
        key = key.rotate_right(8);
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}

/// The implementations of the fast path, exposed so tests and benchmarks can compare them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskImpl {
    /// u128 words, any CPU.
    Portable,
    /// 16-byte SSE2 vectors (x86_64 baseline).
    Sse2,
    /// 32-byte AVX2 vectors.
    Avx2,
    /// 64-byte AVX-512 vectors.
    Avx512,
}

impl MaskImpl {
    /// Whether this CPU can run the implementation.
    pub fn is_available(self) -> bool {
        match self {
            Self::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Self::Sse2 => true,
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The implementation [`apply_mask`] uses on this CPU (for payloads of 64 bytes and more).
    pub fn detected() -> Self {
        imp::detected()
    }

    /// Applies the mask with this implementation, or the portable one when the CPU lacks it.
    pub fn apply(self, buf: &mut [u8], mask: [u8; 4], phase: usize) {
        let key = rotated_key(mask, phase);
        if !self.is_available() {
            return mask_portable(buf, key);
        }
        match self {
            Self::Portable => mask_portable(buf, key),
            #[cfg(target_arch = "x86_64")]
            Self::Sse2 => imp::sse2(buf, key),
            // SAFETY: `is_available` checked the CPU supports the target feature.
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => unsafe { imp::avx2(buf, key) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => unsafe { imp::avx512(buf, key) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => mask_portable(buf, key),
        }
    }
}

/// The mask bytes starting at `phase`: masking with them from offset 0 equals masking with
/// `mask` from offset `phase`.
#[inline(always)]
fn rotated_bytes(mask: [u8; 4], phase: usize) -> [u8; 4] {
    let p = phase & 3;
    [mask[p], mask[(p + 1) & 3], mask[(p + 2) & 3], mask[(p + 3) & 3]]
}

/// The rotated mask as a native-endian word: its in-memory bytes are the rotated mask bytes.
#[inline(always)]
fn rotated_key(mask: [u8; 4], phase: usize) -> u32 {
    u32::from_ne_bytes(rotated_bytes(mask, phase))
}

/// Portable path: u128 words, then single bytes. The key phase is 0 at `buf[0]`.
#[inline(always)]
fn mask_portable(buf: &mut [u8], key: u32) {
    let k = key.to_ne_bytes();
    let k8 = [k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]];
    let wide = u128::from_ne_bytes([
        k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3],
    ]);
    let (words, rest) = buf.as_chunks_mut::<16>();
    for w in words {
        *w = (u128::from_ne_bytes(*w) ^ wide).to_ne_bytes();
    }
    // At most 15 bytes remain, at phase 0 (16 is a multiple of 4).
    let (word, rest) = rest.as_chunks_mut::<8>();
    for w in word {
        *w = (u64::from_ne_bytes(*w) ^ u64::from_ne_bytes(k8)).to_ne_bytes();
    }
    for (b, m) in rest.iter_mut().zip(k.iter().cycle()) {
        *b ^= m;
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use super::{MaskImpl, mask_portable};

    pub(super) fn mask(buf: &mut [u8], key: u32) {
        mask_portable(buf, key);
    }

    pub(super) fn detected() -> MaskImpl {
        MaskImpl::Portable
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;
    use std::sync::atomic::{AtomicU8, Ordering};

    use super::{MaskImpl, mask_portable};

    const UNKNOWN: u8 = 0;
    const SSE2: u8 = 1;
    const AVX2: u8 = 2;
    const AVX512: u8 = 3;

    /// The best implementation for this CPU, detected on first use. A race only repeats the
    /// (idempotent) detection, so relaxed ordering is enough.
    static LEVEL: AtomicU8 = AtomicU8::new(UNKNOWN);

    fn level() -> u8 {
        match LEVEL.load(Ordering::Relaxed) {
            UNKNOWN => {
                let level = if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
                    AVX512
                } else if is_x86_feature_detected!("avx2") {
                    AVX2
                } else {
                    SSE2
                };
                LEVEL.store(level, Ordering::Relaxed);
                level
            }
            level => level,
        }
    }

    pub(super) fn detected() -> MaskImpl {
        match level() {
            AVX512 => MaskImpl::Avx512,
            AVX2 => MaskImpl::Avx2,
            _ => MaskImpl::Sse2,
        }
    }

    #[inline]
    pub(super) fn mask(buf: &mut [u8], key: u32) {
        match level() {
            // SAFETY: `level` returns AVX512 only when the CPU supports avx512f and avx512bw.
            AVX512 => unsafe { avx512(buf, key) },
            // SAFETY: `level` returns AVX2 only when the CPU supports avx2.
            AVX2 => unsafe { avx2(buf, key) },
            _ => sse2(buf, key),
        }
    }

    /// 16 bytes at a time with SSE2, which every x86_64 CPU has.
    pub(super) fn sse2(buf: &mut [u8], key: u32) {
        // SAFETY: SSE2 is part of the x86_64 baseline, so every x86_64 CPU has it.
        let k = unsafe { _mm_set1_epi32(key as i32) };
        let (blocks, rest) = buf.as_chunks_mut::<16>();
        for b in blocks {
            let p = b.as_mut_ptr().cast::<__m128i>();
            // SAFETY: `p` points to 16 writable bytes of `b`; loadu/storeu need no alignment;
            // SSE2 is baseline on x86_64.
            unsafe { _mm_storeu_si128(p, _mm_xor_si128(_mm_loadu_si128(p), k)) };
        }
        mask_portable(rest, key);
    }

    /// 32 bytes at a time, four vectors per iteration to keep both load ports busy.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn avx2(buf: &mut [u8], key: u32) {
        let k = _mm256_set1_epi32(key as i32);
        let (blocks, rest) = buf.as_chunks_mut::<128>();
        for b in blocks {
            let p = b.as_mut_ptr().cast::<__m256i>();
            // SAFETY: `p` points to 128 writable bytes of `b`, i.e. 4 vectors of 32 bytes;
            // loadu/storeu need no alignment.
            unsafe {
                let v0 = _mm256_xor_si256(_mm256_loadu_si256(p), k);
                let v1 = _mm256_xor_si256(_mm256_loadu_si256(p.add(1)), k);
                let v2 = _mm256_xor_si256(_mm256_loadu_si256(p.add(2)), k);
                let v3 = _mm256_xor_si256(_mm256_loadu_si256(p.add(3)), k);
                _mm256_storeu_si256(p, v0);
                _mm256_storeu_si256(p.add(1), v1);
                _mm256_storeu_si256(p.add(2), v2);
                _mm256_storeu_si256(p.add(3), v3);
            }
        }
        let (blocks, rest) = rest.as_chunks_mut::<32>();
        for b in blocks {
            let p = b.as_mut_ptr().cast::<__m256i>();
            // SAFETY: `p` points to 32 writable bytes of `b`.
            unsafe { _mm256_storeu_si256(p, _mm256_xor_si256(_mm256_loadu_si256(p), k)) };
        }
        sse2(rest, key);
    }

    /// 64 bytes at a time, four vectors per iteration; the last partial vector with a masked
    /// load and store (AVX-512BW), which touches only the bytes inside the buffer.
    ///
    /// # Safety
    /// The CPU must support AVX-512F and AVX-512BW.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn avx512(buf: &mut [u8], key: u32) {
        let k = _mm512_set1_epi32(key as i32);
        let (blocks, rest) = buf.as_chunks_mut::<256>();
        for b in blocks {
            let p = b.as_mut_ptr().cast::<__m512i>();
            // SAFETY: `p` points to 256 writable bytes of `b`, i.e. 4 vectors of 64 bytes;
            // loadu/storeu need no alignment.
            unsafe {
                let v0 = _mm512_xor_si512(_mm512_loadu_si512(p), k);
                let v1 = _mm512_xor_si512(_mm512_loadu_si512(p.add(1)), k);
                let v2 = _mm512_xor_si512(_mm512_loadu_si512(p.add(2)), k);
                let v3 = _mm512_xor_si512(_mm512_loadu_si512(p.add(3)), k);
                _mm512_storeu_si512(p, v0);
                _mm512_storeu_si512(p.add(1), v1);
                _mm512_storeu_si512(p.add(2), v2);
                _mm512_storeu_si512(p.add(3), v3);
            }
        }
        let (blocks, rest) = rest.as_chunks_mut::<64>();
        for b in blocks {
            let p = b.as_mut_ptr().cast::<__m512i>();
            // SAFETY: `p` points to 64 writable bytes of `b`.
            unsafe { _mm512_storeu_si512(p, _mm512_xor_si512(_mm512_loadu_si512(p), k)) };
        }
        if !rest.is_empty() {
            // rest.len() < 64, so the shift cannot overflow; bit i selects byte i.
            let m: __mmask64 = (1u64 << rest.len()) - 1;
            let p = rest.as_mut_ptr().cast::<i8>();
            // SAFETY: the mask enables exactly the rest.len() bytes starting at `p`, all inside
            // `rest`; masked-off bytes are neither read nor written (fault suppression), and
            // the unaligned masked forms need no alignment.
            unsafe {
                let v = _mm512_maskz_loadu_epi8(m, p);
                _mm512_mask_storeu_epi8(p, m, _mm512_xor_si512(v, k));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    const IMPLS: [MaskImpl; 4] = [MaskImpl::Portable, MaskImpl::Sse2, MaskImpl::Avx2, MaskImpl::Avx512];

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + 7) as u8).collect()
    }

    #[test]
    fn rfc_hello() {
        let mut b = *b"Hello";
        apply_mask(&mut b, MASK, 0);
        assert_eq!(b, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        apply_mask_scalar(&mut b, MASK, 0);
        assert_eq!(&b, b"Hello");
    }

    /// Every length 0..=4096, every phase, several alignments, every implementation the CPU has.
    #[test]
    fn fast_equals_scalar_exhaustive() {
        let src = pattern(4096 + 64);
        let mut expect = vec![0; 4096 + 64];
        let mut got = vec![0; 4096 + 64];
        for align in [0, 1, 3, 7, 13, 32] {
            for len in 0..=4096 {
                for phase in 0..4 {
                    let range = align..align + len;
                    expect[range.clone()].copy_from_slice(&src[range.clone()]);
                    apply_mask_scalar(&mut expect[range.clone()], MASK, phase);
                    got[range.clone()].copy_from_slice(&src[range.clone()]);
                    apply_mask(&mut got[range.clone()], MASK, phase);
                    assert_eq!(got[range.clone()], expect[range.clone()], "{align} {len} {phase}");
                    if len % 97 == 0 || len < 300 {
                        for imp in IMPLS {
                            got[range.clone()].copy_from_slice(&src[range.clone()]);
                            imp.apply(&mut got[range.clone()], MASK, phase);
                            assert_eq!(got[range.clone()], expect[range.clone()], "{imp:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn pieces_equal_whole() {
        let src = pattern(1000);
        let mut whole = src.clone();
        apply_mask_scalar(&mut whole, MASK, 0);
        for cut in [0, 1, 2, 3, 5, 31, 32, 33, 100, 999, 1000] {
            let mut split = src.clone();
            let (a, b) = split.split_at_mut(cut);
            apply_mask(a, MASK, 0);
            apply_mask(b, MASK, cut);
            assert_eq!(split, whole, "cut {cut}");
        }
    }

    #[test]
    fn detection_is_consistent() {
        assert!(MaskImpl::detected().is_available());
        assert!(MaskImpl::Portable.is_available());
    }
}
