//! RMCP+ cipher suites: RAKP key-exchange codes, session key derivation, packet integrity
//! and AES-CBC-128 confidentiality (IPMI v2.0 sections 13.28-13.31).

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use hmac::{Hmac, Mac};

use super::packet::{Algorithms, DecodeError};

type Aes128CbcEnc = cbc::Encryptor<aes::Aes128>;
type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;

/// The cipher suites this client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherSuite {
    /// RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128.
    Three,
    /// RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128.
    Seventeen,
}

impl CipherSuite {
    /// The suite with this number, if this client speaks it.
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            3 => Some(CipherSuite::Three),
            17 => Some(CipherSuite::Seventeen),
            _ => None,
        }
    }

    /// Its number.
    pub fn id(self) -> u8 {
        match self {
            CipherSuite::Three => 3,
            CipherSuite::Seventeen => 17,
        }
    }

    /// Algorithm numbers proposed in the Open Session Request.
    pub fn algorithms(self) -> Algorithms {
        match self {
            CipherSuite::Three => Algorithms {
                auth: 0x01,
                integrity: 0x01,
                confidentiality: 0x01,
            },
            CipherSuite::Seventeen => Algorithms {
                auth: 0x03,
                integrity: 0x04,
                confidentiality: 0x01,
            },
        }
    }

    fn hash(self) -> Hash {
        match self {
            CipherSuite::Three => Hash::Sha1,
            CipherSuite::Seventeen => Hash::Sha256,
        }
    }

    /// Length of the RAKP key exchange code (full HMAC output).
    pub fn rakp_len(self) -> usize {
        self.hash().len()
    }

    /// Length of the RAKP4 integrity check value and of each packet's integrity code
    /// (HMAC-SHA1-96: 12, HMAC-SHA256-128: 16).
    pub fn icv_len(self) -> usize {
        match self {
            CipherSuite::Three => 12,
            CipherSuite::Seventeen => 16,
        }
    }

    /// HMAC over `parts` (concatenated) keyed with `key`, with this suite's hash.
    pub fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        self.hash().hmac(key, parts)
    }
}

#[derive(Clone, Copy)]
enum Hash {
    Sha1,
    Sha256,
}

impl Hash {
    fn len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
        }
    }

    fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        // HMAC accepts keys of any length: `new_from_slice` cannot fail here.
        match self {
            Hash::Sha1 => {
                let mut m = <Hmac<sha1::Sha1> as Mac>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
                for p in parts {
                    m.update(p);
                }
                m.finalize().into_bytes().to_vec()
            }
            Hash::Sha256 => {
                let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
                for p in parts {
                    m.update(p);
                }
                m.finalize().into_bytes().to_vec()
            }
        }
    }
}

/// Constant-time comparison, so a forged reply cannot probe a code byte by byte.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Keys of an established session.
#[derive(Clone)]
pub struct SessionKeys {
    suite: CipherSuite,
    k1: Vec<u8>,
    aes: [u8; 16],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// Derives K1 (integrity) and K2 (first 16 bytes: the AES key) from the session
    /// integrity key.
    pub fn derive(suite: CipherSuite, sik: &[u8]) -> Self {
        let n = suite.rakp_len();
        let k1 = suite.hmac(sik, &[&vec![0x01; n]]);
        let k2 = suite.hmac(sik, &[&vec![0x02; n]]);
        let mut aes = [0u8; 16];
        aes.copy_from_slice(&k2[..16]);
        SessionKeys { suite, k1, aes }
    }

    /// The integrity code for the bytes from the session header through the next header.
    pub fn sign(&self, covered: &[u8]) -> Vec<u8> {
        let mut code = self.suite.hmac(&self.k1, &[covered]);
        code.truncate(self.suite.icv_len());
        code
    }

    /// Whether `code` is the integrity code of `covered`.
    pub fn verify(&self, covered: &[u8], code: &[u8]) -> bool {
        ct_eq(&self.sign(covered), code)
    }

    /// Integrity code length.
    pub fn icv_len(&self) -> usize {
        self.suite.icv_len()
    }

    /// AES-CBC-128 with a fresh random IV; confidentiality pad 1, 2, .., N then N.
    pub fn encrypt(&self, plain: &[u8]) -> Result<Vec<u8>, getrandom::Error> {
        let mut iv = [0u8; 16];
        getrandom::getrandom(&mut iv)?;
        Ok(self.encrypt_with_iv(plain, iv))
    }

    fn encrypt_with_iv(&self, plain: &[u8], iv: [u8; 16]) -> Vec<u8> {
        let pad = (16 - (plain.len() + 1) % 16) % 16;
        let mut buf = plain.to_vec();
        buf.extend((1..=pad).map(|i| i as u8));
        buf.push(pad as u8);
        let len = buf.len();
        let enc = Aes128CbcEnc::new(&self.aes.into(), &iv.into());
        // The length is a multiple of 16 by construction, so NoPadding cannot fail.
        let ct = enc
            .encrypt_padded_mut::<NoPadding>(&mut buf, len)
            .unwrap_or_else(|_| unreachable!("block-aligned"))
            .to_vec();
        let mut out = iv.to_vec();
        out.extend_from_slice(&ct);
        out
    }

    /// Reverses [`encrypt`](Self::encrypt); rejects anything malformed.
    pub fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, DecodeError> {
        if data.len() < 32 || !data.len().is_multiple_of(16) {
            return Err(DecodeError::Invalid(format!(
                "encrypted payload of {} bytes is not IV + whole AES blocks",
                data.len()
            )));
        }
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&data[..16]);
        let mut buf = data[16..].to_vec();
        let dec = Aes128CbcDec::new(&self.aes.into(), &iv.into());
        let plain = dec
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .map_err(|_| DecodeError::Invalid("AES-CBC decryption failed".into()))?;
        let pad = *plain.last().unwrap_or(&0) as usize;
        if pad > 15 || pad + 1 > plain.len() {
            return Err(DecodeError::Invalid(format!(
                "confidentiality pad length {pad} is invalid"
            )));
        }
        let body_len = plain.len() - pad - 1;
        for (i, b) in plain[body_len..body_len + pad].iter().enumerate() {
            if *b as usize != i + 1 {
                return Err(DecodeError::Invalid(
                    "confidentiality pad bytes are wrong (wrong key?)".into(),
                ));
            }
        }
        Ok(plain[..body_len].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha1_matches_rfc2202_case_2() {
        let out = CipherSuite::Three.hmac(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            out,
            [
                0xef, 0xfc, 0xdf, 0x6a, 0xe5, 0xeb, 0x2f, 0xa2, 0xd2, 0x74, 0x16, 0xd5, 0xf1, 0x84,
                0xdf, 0x9c, 0x25, 0x9a, 0x7c, 0x79
            ]
        );
    }

    #[test]
    fn hmac_sha256_matches_rfc4231_case_2() {
        let out = CipherSuite::Seventeen.hmac(b"Jefe", &[b"what do ya want for nothing?"]);
        assert_eq!(out[..8], [0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e]);
        assert_eq!(out.len(), 32);
    }

    #[test]
    fn aes_round_trip_all_pad_lengths_and_tamper() {
        let keys = SessionKeys::derive(CipherSuite::Three, b"sik");
        for n in 0..40 {
            let plain: Vec<u8> = (0..n as u8).collect();
            let ct = keys.encrypt_with_iv(&plain, [7; 16]);
            assert_eq!(ct.len() % 16, 0);
            assert_eq!(keys.decrypt(&ct).unwrap(), plain);
        }
        let other = SessionKeys::derive(CipherSuite::Three, b"other");
        let ct = keys.encrypt_with_iv(b"chassis", [1; 16]);
        assert!(other.decrypt(&ct).is_err() || other.decrypt(&ct).unwrap() != b"chassis");
        assert!(keys.decrypt(&ct[..20]).is_err());
    }

    #[test]
    fn integrity_code_is_truncated_per_suite() {
        let k3 = SessionKeys::derive(CipherSuite::Three, b"sik");
        let k17 = SessionKeys::derive(CipherSuite::Seventeen, b"sik");
        assert_eq!(k3.sign(b"abc").len(), 12);
        assert_eq!(k17.sign(b"abc").len(), 16);
        assert!(k3.verify(b"abc", &k3.sign(b"abc")));
        assert!(!k3.verify(b"abd", &k3.sign(b"abc")));
    }
}
