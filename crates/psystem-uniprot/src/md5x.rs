//! MD5 of many messages at once: eight independent MD5 computations run side by side, one per lane.
//!
//! MD5 (RFC 1321) is sequential within one message, so one digest runs at about 4.5 CPU cycles per byte however it
//! is written; the reader hashes every entry's text (`content_md5`) and sequence (`sequence_md5`), which are
//! independent messages. Here eight messages advance one 64-byte block each per round, with the eight states held
//! as `[u32; 8]` lanes that the compiler turns into SIMD instructions (SSE2 on any x86-64; no `unsafe`, no
//! run-time CPU detection). Lanes are refilled with the next message as soon as theirs is done, longest messages
//! first, so lanes rarely idle. The digests are bit-for-bit RFC 1321 MD5 (tested against the `md-5` crate).

const LANES: usize = 8;

type V = wide::u32x8;

/// Per-round additive constants `floor(abs(sin(i + 1)) * 2^32)` (RFC 1321, section 3.4).
const K: [u32; 64] = [
    0xd76a_a478,
    0xe8c7_b756,
    0x2420_70db,
    0xc1bd_ceee,
    0xf57c_0faf,
    0x4787_c62a,
    0xa830_4613,
    0xfd46_9501,
    0x6980_98d8,
    0x8b44_f7af,
    0xffff_5bb1,
    0x895c_d7be,
    0x6b90_1122,
    0xfd98_7193,
    0xa679_438e,
    0x49b4_0821,
    0xf61e_2562,
    0xc040_b340,
    0x265e_5a51,
    0xe9b6_c7aa,
    0xd62f_105d,
    0x0244_1453,
    0xd8a1_e681,
    0xe7d3_fbc8,
    0x21e1_cde6,
    0xc337_07d6,
    0xf4d5_0d87,
    0x455a_14ed,
    0xa9e3_e905,
    0xfcef_a3f8,
    0x676f_02d9,
    0x8d2a_4c8a,
    0xfffa_3942,
    0x8771_f681,
    0x6d9d_6122,
    0xfde5_380c,
    0xa4be_ea44,
    0x4bde_cfa9,
    0xf6bb_4b60,
    0xbebf_bc70,
    0x289b_7ec6,
    0xeaa1_27fa,
    0xd4ef_3085,
    0x0488_1d05,
    0xd9d4_d039,
    0xe6db_99e5,
    0x1fa2_7cf8,
    0xc4ac_5665,
    0xf429_2244,
    0x432a_ff97,
    0xab94_23a7,
    0xfc93_a039,
    0x655b_59c3,
    0x8f0c_cc92,
    0xffef_f47d,
    0x8584_5dd1,
    0x6fa8_7e4f,
    0xfe2c_e6e0,
    0xa301_4314,
    0x4e08_11a1,
    0xf753_7e82,
    0xbd3a_f235,
    0x2ad7_d2bb,
    0xeb86_d391,
];

/// Rotation amounts per round.
const S: [u32; 64] = [
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9,
    14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15,
    21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
];

/// Initial state (A, B, C, D).
const IV: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// One MD5 step on all lanes (`R` = round 0..3, `I` = step 0..63): `a = b + rotl(a + f(b, c, d) + K[I] + x[g], S[I])`.
#[inline(always)]
fn step<const R: usize, const I: usize>(a: V, b: V, c: V, d: V, x: &[V; 16]) -> V {
    let f = match R {
        0 => d ^ (b & (c ^ d)),
        1 => c ^ (d & (b ^ c)),
        2 => b ^ c ^ d,
        _ => c ^ (b | !d),
    };
    let g = match R {
        0 => I,
        1 => (5 * I + 1) % 16,
        2 => (3 * I + 5) % 16,
        _ => (7 * I) % 16,
    };
    let t = a + f + x[g] + V::splat(K[I]);
    ((t << S[I]) | (t >> (32 - S[I]))) + b
}

macro_rules! four_steps {
    ($r:literal, $i:literal, $a:ident, $b:ident, $c:ident, $d:ident, $x:ident) => {
        $a = step::<$r, { $i }>($a, $b, $c, $d, $x);
        $d = step::<$r, { $i + 1 }>($d, $a, $b, $c, $x);
        $c = step::<$r, { $i + 2 }>($c, $d, $a, $b, $x);
        $b = step::<$r, { $i + 3 }>($b, $c, $d, $a, $x);
    };
}

/// Compress one 64-byte block per lane (`x[w]` lane `l` = little-endian word `w` of lane `l`'s block).
#[inline(never)]
fn compress(state: &mut [V; 4], x: &[V; 16]) {
    let [mut a, mut b, mut c, mut d] = *state;
    four_steps!(0, 0, a, b, c, d, x);
    four_steps!(0, 4, a, b, c, d, x);
    four_steps!(0, 8, a, b, c, d, x);
    four_steps!(0, 12, a, b, c, d, x);
    four_steps!(1, 16, a, b, c, d, x);
    four_steps!(1, 20, a, b, c, d, x);
    four_steps!(1, 24, a, b, c, d, x);
    four_steps!(1, 28, a, b, c, d, x);
    four_steps!(2, 32, a, b, c, d, x);
    four_steps!(2, 36, a, b, c, d, x);
    four_steps!(2, 40, a, b, c, d, x);
    four_steps!(2, 44, a, b, c, d, x);
    four_steps!(3, 48, a, b, c, d, x);
    four_steps!(3, 52, a, b, c, d, x);
    four_steps!(3, 56, a, b, c, d, x);
    four_steps!(3, 60, a, b, c, d, x);
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
}

/// A lane's message: its whole blocks are read in place, the last one or two (padded) blocks from `tail`.
struct Lane {
    message: usize,
    whole_blocks: usize,
    total_blocks: usize,
    next_block: usize,
    tail: [u8; 128],
}

/// MD5 digests of `messages`, in the same order.
pub(crate) fn md5_many(messages: &[&[u8]]) -> Vec<[u8; 16]> {
    let mut digests = vec![[0u8; 16]; messages.len()];
    // Longest first: the lanes then finish at about the same time.
    let mut order: Vec<usize> = (0..messages.len()).collect();
    order.sort_unstable_by_key(|&i| std::cmp::Reverse(messages[i].len()));
    let mut queue = order.into_iter();
    let mut lanes: [Option<Lane>; LANES] = Default::default();
    let mut state: [V; 4] = [V::splat(0); 4];
    let mut words = [[0u32; LANES]; 16];
    loop {
        let mut active = false;
        let mut fresh = [false; LANES];
        for (l, slot) in lanes.iter_mut().enumerate() {
            if slot.is_none() {
                if let Some(m) = queue.next() {
                    *slot = Some(start_lane(m, messages[m]));
                    fresh[l] = true;
                }
            }
            let Some(lane) = slot else { continue };
            active = true;
            let block: &[u8] = if lane.next_block < lane.whole_blocks {
                let at = lane.next_block * 64;
                &messages[lane.message][at..at + 64]
            } else {
                let at = (lane.next_block - lane.whole_blocks) * 64;
                &lane.tail[at..at + 64]
            };
            for (w, word) in block.chunks_exact(4).enumerate() {
                words[w][l] = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            }
        }
        if !active {
            break;
        }
        if fresh.iter().any(|&f| f) {
            // Lanes that start a message start from the initial state.
            for (s, iv) in state.iter_mut().zip(IV) {
                let mut lanes_now = s.to_array();
                for (v, &f) in lanes_now.iter_mut().zip(&fresh) {
                    if f {
                        *v = iv;
                    }
                }
                *s = V::new(lanes_now);
            }
        }
        let x: [V; 16] = std::array::from_fn(|w| V::new(words[w]));
        compress(&mut state, &x);
        let mut lanes_out: Option<[[u32; LANES]; 4]> = None;
        for (l, slot) in lanes.iter_mut().enumerate() {
            let Some(lane) = slot else { continue };
            lane.next_block += 1;
            if lane.next_block == lane.total_blocks {
                let st = lanes_out.get_or_insert_with(|| state.map(V::to_array));
                let out = &mut digests[lane.message];
                for (j, s) in st.iter().enumerate() {
                    out[4 * j..4 * j + 4].copy_from_slice(&s[l].to_le_bytes());
                }
                *slot = None;
            }
        }
    }
    digests
}

fn start_lane(message: usize, bytes: &[u8]) -> Lane {
    let whole_blocks = bytes.len() / 64;
    let rest = &bytes[whole_blocks * 64..];
    let mut tail = [0u8; 128];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    // The bit length goes in the last 8 bytes of the first tail block that has room for it.
    let tail_blocks = if rest.len() < 56 { 1 } else { 2 };
    let bits = (bytes.len() as u64).wrapping_mul(8);
    tail[tail_blocks * 64 - 8..tail_blocks * 64].copy_from_slice(&bits.to_le_bytes());
    Lane {
        message,
        whole_blocks,
        total_blocks: whole_blocks + tail_blocks,
        next_block: 0,
        tail,
    }
}

#[cfg(test)]
mod tests {
    use md5::{Digest, Md5};

    use super::*;

    fn reference(m: &[u8]) -> [u8; 16] {
        Md5::digest(m).into()
    }

    #[test]
    fn rfc_1321_test_suite() {
        let cases: [(&[u8], &str); 4] = [
            (b"", "d41d8cd98f00b204e9800998ecf8427e"),
            (b"abc", "900150983cd24fb0d6963f7d28e17f72"),
            (b"message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        let messages: Vec<&[u8]> = cases.iter().map(|c| c.0).collect();
        for (d, (_, hex)) in md5_many(&messages).iter().zip(cases) {
            assert_eq!(crate::hex_lower(d), hex);
        }
    }

    #[test]
    fn equals_md5_for_every_length_and_batch_shape() {
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        // Every length around the padding edges (55, 56, 63, 64, …), in one batch and one at a time.
        let messages: Vec<&[u8]> = (0..300).map(|n| &data[n..2 * n]).collect();
        let got = md5_many(&messages);
        for (m, d) in messages.iter().zip(&got) {
            assert_eq!(*d, reference(m), "length {}", m.len());
        }
        for m in &messages[..70] {
            assert_eq!(md5_many(&[m]), [reference(m)]);
        }
        // Mixed long and short, more messages than lanes.
        let messages: Vec<&[u8]> = (0..37).map(|i| &data[i..i + (i * 131) % 4900]).collect();
        for (m, d) in messages.iter().zip(md5_many(&messages)) {
            assert_eq!(d, reference(m));
        }
        assert!(md5_many(&[]).is_empty());
    }
}
