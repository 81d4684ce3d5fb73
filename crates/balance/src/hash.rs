//! A frozen 64-bit hash for hash keys, ring points and sticky split sides.
//!
//! Owns [`stable_hash`]. Why not `std`'s hasher: `RandomState` differs per process and
//! `DefaultHasher`'s algorithm may change between Rust releases, but a sticky client must land
//! on the same endpoint whichever agent (gateway) or process (client library) it goes through,
//! today and after an upgrade. FNV-1a over the bytes, then murmur3's 64-bit finalizer so that
//! keys differing in one byte spread over the whole ring. Changing this function moves every
//! sticky key once: treat it as a wire format.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Hashes the concatenation of `parts`, with a 0xff separator after each part so that
/// `["ab", "c"]` and `["a", "bc"]` differ.
pub(crate) fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h = FNV_OFFSET;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
        h ^= 0xff;
        h = h.wrapping_mul(FNV_PRIME);
    }
    fmix64(h)
}

/// A hash mapped to `[0, 1)`, with the 53 bits an `f64` holds exactly.
pub(crate) fn unit_fraction(hash: u64) -> f64 {
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// murmur3's finalizer: every input bit affects every output bit.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_values() {
        // Pinned (checked against an independent FNV-1a + fmix64 implementation): a change here
        // moves every sticky session in production.
        assert_eq!(stable_hash(&[]), fmix64(FNV_OFFSET));
        assert_eq!(stable_hash(&[b"user-42"]), stable_hash(&[b"user-42"]));
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
        assert_eq!(stable_hash(&[b"10.0.0.1"]), 0x99e3_e2c3_821e_674e);
    }

    #[test]
    fn fractions_cover_the_unit_interval() {
        assert_eq!(unit_fraction(0), 0.0);
        assert!(unit_fraction(u64::MAX) < 1.0);
        let mean: f64 = (0..10_000u32)
            .map(|i| unit_fraction(stable_hash(&[&i.to_le_bytes()])))
            .sum::<f64>()
            / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }
}
