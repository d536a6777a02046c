//! Encryption at rest for the URIs a job was submitted with (they may carry
//! storage credentials): AES-256-GCM under the configured `secrets_key`.
//! Without a key they are stored as given, and feederd warns at start-up.

use crate::{StoreError, StoreResult};
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

const PREFIX: &str = "sealed:v1:";

pub struct Sealer {
    cipher: Aes256Gcm,
}

impl Sealer {
    /// `key` is 32 bytes, base64-encoded (`openssl rand -base64 32`).
    pub fn from_base64(key: &str) -> Result<Sealer, String> {
        let bytes = STANDARD
            .decode(key.trim())
            .map_err(|e| format!("secrets_key is not base64: {e}"))?;
        let cipher = Aes256Gcm::new_from_slice(&bytes)
            .map_err(|_| format!("secrets_key must be 32 bytes, not {}", bytes.len()))?;
        Ok(Sealer { cipher })
    }

    pub fn seal(&self, plain: &str) -> String {
        let nonce: [u8; 12] = rand::random();
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
            .expect("AES-GCM encryption cannot fail for in-memory data");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    fn open(&self, sealed: &str) -> StoreResult<String> {
        let bad = || {
            StoreError::Other(
                "stored job credentials cannot be decrypted with this secrets_key".into(),
            )
        };
        let bytes = STANDARD.decode(sealed).map_err(|_| bad())?;
        if bytes.len() < 12 {
            return Err(bad());
        }
        let (nonce, data) = bytes.split_at(12);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), data)
            .map_err(|_| bad())?;
        String::from_utf8(plain).map_err(|_| bad())
    }
}

pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// Seal with the key when there is one.
pub fn seal(sealer: Option<&Sealer>, plain: &str) -> String {
    match sealer {
        Some(sealer) => sealer.seal(plain),
        None => plain.to_string(),
    }
}

/// Read what [`seal`] wrote: plain text passes through (rows written before a
/// key was configured); sealed text needs the key.
pub fn unseal(sealer: Option<&Sealer>, stored: &str) -> StoreResult<String> {
    let Some(sealed) = stored.strip_prefix(PREFIX) else {
        return Ok(stored.to_string());
    };
    match sealer {
        Some(sealer) => sealer.open(sealed),
        None => Err(StoreError::Other(
            "stored job credentials are encrypted and no secrets_key is configured".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    #[test]
    fn round_trip_and_no_plain_text_at_rest() {
        let sealer = Sealer::from_base64(KEY).unwrap();
        let plain = r#"{"source":"s3://AKIA:s3cr/et@bucket/a.mp4"}"#;
        let stored = seal(Some(&sealer), plain);
        assert!(!stored.contains("s3cr"));
        assert_ne!(seal(Some(&sealer), plain), stored, "fresh nonce each time");
        assert_eq!(unseal(Some(&sealer), &stored).unwrap(), plain);
        assert_eq!(unseal(Some(&sealer), plain).unwrap(), plain);
        assert!(unseal(None, &stored).is_err());
        let other = Sealer::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        assert!(unseal(Some(&other), &stored).is_err());
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(Sealer::from_base64("not base64!").is_err());
        assert!(Sealer::from_base64(&STANDARD.encode([1u8; 16])).is_err());
    }
}
