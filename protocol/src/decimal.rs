//! Unsigned integers in decimal, written without allocating (envelopes, HTTP heads,
//! positions): below every codec that writes numbers.

use bytes::BufMut;

/// Number of decimal digits of `n`.
pub(crate) fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Writes `n` in decimal without allocating.
pub(crate) fn put_u64(out: &mut impl BufMut, n: u64) {
    let mut digits = [0u8; 20];
    let start = format_u64(&mut digits, n);
    out.put_slice(&digits[start..]);
}

/// Appends `n` in decimal to a `Vec`.
pub(crate) fn write_u64(out: &mut Vec<u8>, n: u64) {
    put_u64(out, n);
}

/// Formats `n` right-aligned into `digits`, returning where it starts.
fn format_u64(digits: &mut [u8; 20], mut n: u64) -> usize {
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return i;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        for n in [0, 7, 10, 99, 12345, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
            assert_eq!(decimal_len(n), out.len());
        }
    }
}
