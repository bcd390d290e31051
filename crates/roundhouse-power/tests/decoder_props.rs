//! The RMCP+ reply path never panics on hostile bytes: random datagrams, and real-shaped
//! encrypted, signed replies with random corruption, go through the same steps the session
//! takes (packet, integrity, decryption, IPMI message).

use proptest::prelude::*;
use roundhouse_power::ipmi::CipherSuite;
use roundhouse_power::ipmi::crypto::SessionKeys;
use roundhouse_power::ipmi::packet::{self, decode_packet, decode_response};

fn reply_path(keys: &SessionKeys, bytes: &[u8]) -> Option<packet::Response> {
    let p = decode_packet(bytes, keys.icv_len()).ok()?;
    if p.authenticated && !keys.verify(p.signed, p.auth_code) {
        return None;
    }
    let plain = if p.encrypted {
        keys.decrypt(p.payload).ok()?
    } else {
        p.payload.to_vec()
    };
    decode_response(&plain).ok()
}

fn signed_reply(keys: &SessionKeys, msg: &[u8]) -> Vec<u8> {
    let body = keys.encrypt(msg).unwrap();
    let sign = |b: &[u8]| keys.sign(b);
    packet::encode_packet(0, true, 0x0102_0304, 9, &body, Some(&sign))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_datagrams(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        for suite in [CipherSuite::Three, CipherSuite::Seventeen] {
            let keys = SessionKeys::derive(suite, b"sik");
            let _ = reply_path(&keys, &bytes);
        }
    }

    #[test]
    fn corrupted_real_replies(data in proptest::collection::vec(any::<u8>(), 0..40),
                              flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
                              cut in any::<usize>()) {
        let keys = SessionKeys::derive(CipherSuite::Three, b"sik");
        let mut msg = vec![0x81, 0x04, 0x7B, 0x20, 0x04, 0x01, 0x00];
        msg.extend_from_slice(&data);
        let sum = msg[3..].iter().fold(0u8, |a, b| a.wrapping_add(*b)).wrapping_neg();
        msg.push(sum);
        let good = signed_reply(&keys, &msg);
        // Unmodified, the reply decodes to what was sent.
        let r = reply_path(&keys, &good).expect("an intact reply decodes");
        prop_assert_eq!(r.data, data);
        let mut bad = good.clone();
        for (at, x) in flips {
            let i = at % bad.len();
            bad[i] ^= x | 1;
        }
        let _ = reply_path(&keys, &bad);
        let _ = reply_path(&keys, &good[..cut % (good.len() + 1)]);
    }
}
