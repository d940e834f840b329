//! TOTP (RFC 6238: HMAC-SHA1, 30-second steps, 6 digits) and the base32 of its secrets (RFC 4648),
//! for the dev hosted UI's authenticator step and enrolment page. Pure: time is passed in.

use aws_lc_rs::hmac;

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const STEP_SECONDS: u64 = 30;

/// A secret of 160 random bits, base32 without padding (what authenticator apps expect).
pub fn new_secret(random: [u8; 20]) -> String {
    base32(&random)
}

/// The code for `secret` at Unix time `now`; `None` when the secret is not base32.
pub fn code(secret: &str, now: u64) -> Option<String> {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &unbase32(secret)?);
    let tag = hmac::sign(&key, &(now / STEP_SECONDS).to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let value = u32::from_be_bytes([mac[offset], mac[offset + 1], mac[offset + 2], mac[offset + 3]]) & 0x7fff_ffff;
    Some(format!("{:06}", value % 1_000_000))
}

/// True when `given` is the code of the step at `now` or of the one before or after (clock drift
/// between the phone and the server).
pub fn verify(secret: &str, given: &str, now: u64) -> bool {
    let given = given.trim();
    given.len() == 6
        && [now.saturating_sub(STEP_SECONDS), now, now + STEP_SECONDS]
            .iter()
            .any(|&at| code(secret, at).is_some_and(|expected| constant_eq(expected.as_bytes(), given.as_bytes())))
}

/// The `otpauth://` URI an authenticator app reads from a QR code or a link.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const LABEL: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    let (issuer, account) = (utf8_percent_encode(issuer, LABEL), utf8_percent_encode(account, LABEL));
    format!("otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits=6&period=30")
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

fn base32(bytes: &[u8]) -> String {
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

fn unbase32(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        let value = ALPHABET.iter().position(|&a| a == c.to_ascii_uppercase())? as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_rfc_6238s_sha1_vectors() {
        // RFC 6238 appendix B: the ASCII secret "12345678901234567890", 8 digits; the last 6 here.
        let secret = base32(b"12345678901234567890");
        assert_eq!(secret, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        for (at, eight) in [(59, "94287082"), (1_111_111_109, "07081804"), (1_234_567_890, "89005924")] {
            assert_eq!(code(&secret, at).unwrap(), eight[2..], "at {at}");
        }
    }

    #[test]
    fn a_code_is_accepted_one_step_either_side_and_not_further() {
        let secret = new_secret([7; 20]);
        let now = 1_800_000_000;
        assert!(verify(&secret, &code(&secret, now).unwrap(), now));
        assert!(verify(&secret, &code(&secret, now - 30).unwrap(), now));
        assert!(!verify(&secret, &code(&secret, now - 90).unwrap(), now));
        assert!(!verify(&secret, "12345", now) && !verify("not base32!", "123456", now));
        assert_eq!(unbase32(&base32(&[1, 2, 3, 250])).unwrap(), [1, 2, 3, 250]);
    }
}
