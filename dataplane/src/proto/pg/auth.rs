//! Codec stage, authentication exchange: the server's 'R' requests and the client's 'p' answers.
//!
//! Formats from <https://www.postgresql.org/docs/current/protocol-message-formats.html>:
//!
//! ```text
//! server 'R'  Int32 code | ...
//!   0  AuthenticationOk                 (nothing)
//!   3  AuthenticationCleartextPassword  (nothing)
//!   5  AuthenticationMD5Password        Byte4 salt
//!  10  AuthenticationSASL               String mechanism × n | Byte1 0
//!  11  AuthenticationSASLContinue       Byten data
//!  12  AuthenticationSASLFinal          Byten data
//!   2, 7, 8, 9 (Kerberos, GSS, SSPI)    kept raw as `Other`
//! client 'p'
//!   PasswordMessage       String password
//!   SASLInitialResponse   String mechanism | Int32 len (-1 = none) | Byten data
//!   SASLResponse          Byten data
//!   GSSResponse           Byten data
//! ```
//!
//! The four 'p' bodies share one tag and only the exchange so far tells them apart, so the
//! frontend decoder keeps the raw body and the session reads it with the function for the step
//! it is in.

use super::wire::{self, Cursor};
use super::ProtocolError;

/// An 'R' message: what the server asks for, or that authentication is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication<'a> {
    /// Code 0: authenticated.
    Ok,
    /// Code 3: send the password in clear (the gateway asks clients for their token this way).
    CleartextPassword,
    /// Code 5: send `md5(md5(password + user) + salt)`.
    Md5Password {
        /// Salt to hash with.
        salt: [u8; 4],
    },
    /// Code 10: start SASL with one of these mechanisms (`SCRAM-SHA-256`, ...).
    Sasl {
        /// Mechanism names in the server's order of preference.
        mechanisms: Vec<&'a str>,
    },
    /// Code 11: SASL challenge (SCRAM server-first-message).
    SaslContinue(&'a [u8]),
    /// Code 12: SASL outcome (SCRAM server-final-message).
    SaslFinal(&'a [u8]),
    /// Any other code (Kerberos, GSSAPI, SSPI): code and the rest of the body.
    Other {
        /// The request code; never one of the codes above.
        code: i32,
        /// The bytes after the code.
        data: &'a [u8],
    },
}

impl<'a> Authentication<'a> {
    /// Decodes the body of an 'R' message.
    pub fn decode(body: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut cur = Cursor::new(body);
        let auth = match cur.i32()? {
            0 => Authentication::Ok,
            3 => Authentication::CleartextPassword,
            5 => Authentication::Md5Password { salt: cur.array()? },
            10 => {
                let mut mechanisms = Vec::new();
                loop {
                    let m = cur.cstr()?;
                    if m.is_empty() {
                        break;
                    }
                    mechanisms.push(m);
                }
                Authentication::Sasl { mechanisms }
            }
            11 => Authentication::SaslContinue(cur.rest()),
            12 => Authentication::SaslFinal(cur.rest()),
            code => Authentication::Other {
                code,
                data: cur.rest(),
            },
        };
        cur.finish()?;
        Ok(auth)
    }

    /// Writes the body of an 'R' message (no tag, no length).
    pub(super) fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Authentication::Ok => wire::put_i32(out, 0),
            Authentication::CleartextPassword => wire::put_i32(out, 3),
            Authentication::Md5Password { salt } => {
                wire::put_i32(out, 5);
                out.extend_from_slice(salt);
            }
            Authentication::Sasl { mechanisms } => {
                wire::put_i32(out, 10);
                for m in mechanisms {
                    wire::put_cstr(out, m);
                }
                out.push(0);
            }
            Authentication::SaslContinue(data) => {
                wire::put_i32(out, 11);
                out.extend_from_slice(data);
            }
            Authentication::SaslFinal(data) => {
                wire::put_i32(out, 12);
                out.extend_from_slice(data);
            }
            Authentication::Other { code, data } => {
                wire::put_i32(out, *code);
                out.extend_from_slice(data);
            }
        }
    }
}

/// Reads a cleartext PasswordMessage body: one NUL-terminated UTF-8 string, nothing after it.
pub fn password_text(body: &[u8]) -> Result<&str, ProtocolError> {
    let mut cur = Cursor::new(body);
    let password = cur.cstr()?;
    cur.finish()?;
    Ok(password)
}

/// The first SASL message from the client: the chosen mechanism and its first message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaslInitialResponse<'a> {
    /// Mechanism chosen from the server's list, e.g. `SCRAM-SHA-256`.
    pub mechanism: &'a str,
    /// The mechanism's first message (SCRAM client-first-message). A client that sends none
    /// (length -1) decodes as empty, which SCRAM treats as a failed exchange anyway.
    pub data: &'a [u8],
}

impl<'a> SaslInitialResponse<'a> {
    /// Decodes the body of a 'p' message sent in answer to AuthenticationSASL.
    pub fn decode(body: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut cur = Cursor::new(body);
        let mechanism = cur.cstr()?;
        let data = cur.value()?.unwrap_or_default();
        cur.finish()?;
        Ok(SaslInitialResponse { mechanism, data })
    }

    /// Writes the whole 'p' message.
    pub fn encode(&self, out: &mut Vec<u8>) {
        wire::message(out, b'p', |out| {
            wire::put_cstr(out, self.mechanism);
            wire::put_value(out, Some(self.data));
        });
    }
}

/// Writes a PasswordMessage with `password` in clear (or an md5 hash as text).
pub fn encode_password(out: &mut Vec<u8>, password: &str) {
    wire::message(out, b'p', |out| wire::put_cstr(out, password));
}

/// Writes a SASLResponse carrying `data` (SCRAM client-final-message).
pub fn encode_sasl_response(out: &mut Vec<u8>, data: &[u8]) {
    wire::message(out, b'p', |out| out.extend_from_slice(data));
}

/// Writes AuthenticationOk.
pub fn encode_auth_ok(out: &mut Vec<u8>) {
    wire::message(out, b'R', |out| Authentication::Ok.encode_body(out));
}

/// Writes AuthenticationCleartextPassword.
pub fn encode_auth_cleartext(out: &mut Vec<u8>) {
    wire::message(out, b'R', |out| {
        Authentication::CleartextPassword.encode_body(out)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_password_message() {
        // psql 15 answering AuthenticationCleartextPassword with PGPASSWORD=secret.
        let bytes = b"p\x00\x00\x00\x0bsecret\x00";
        let mut out = Vec::new();
        encode_password(&mut out, "secret");
        assert_eq!(out, bytes);
        assert_eq!(password_text(&bytes[5..]), Ok("secret"));
        assert!(password_text(b"secret").is_err(), "no NUL");
        assert!(password_text(b"secret\0x").is_err(), "trailing byte");
        assert_eq!(password_text(b"\xc3\x28\0"), Err(ProtocolError::Utf8));
    }

    #[test]
    fn auth_requests() {
        let mut out = Vec::new();
        encode_auth_ok(&mut out);
        encode_auth_cleartext(&mut out);
        // As PostgreSQL 15 sends them.
        assert_eq!(
            out,
            b"R\x00\x00\x00\x08\x00\x00\x00\x00R\x00\x00\x00\x08\x00\x00\x00\x03"
        );
        assert_eq!(
            Authentication::decode(b"\0\0\0\x05\x01\x02\x03\x04"),
            Ok(Authentication::Md5Password { salt: [1, 2, 3, 4] })
        );
        assert!(
            Authentication::decode(b"\0\0\0\x05\x01\x02\x03").is_err(),
            "short salt"
        );
        assert!(
            Authentication::decode(b"\0\0\0\x00\x01").is_err(),
            "Ok with a body"
        );
        assert_eq!(
            Authentication::decode(b"\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"),
            Ok(Authentication::Sasl {
                mechanisms: vec!["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
            })
        );
        assert!(
            Authentication::decode(b"\0\0\0\x0aSCRAM-SHA-256\0").is_err(),
            "no list terminator"
        );
        assert_eq!(
            Authentication::decode(b"\0\0\0\x0br=abc"),
            Ok(Authentication::SaslContinue(b"r=abc"))
        );
        assert_eq!(
            Authentication::decode(b"\0\0\0\x0cv=xyz"),
            Ok(Authentication::SaslFinal(b"v=xyz"))
        );
        assert_eq!(
            Authentication::decode(b"\0\0\0\x07"),
            Ok(Authentication::Other { code: 7, data: b"" })
        );
    }

    #[test]
    fn sasl_initial_response() {
        let first = SaslInitialResponse {
            mechanism: "SCRAM-SHA-256",
            data: b"n,,n=,r=rOprNGfwEbeRWgbNEkqO",
        };
        let mut out = Vec::new();
        first.encode(&mut out);
        assert_eq!(&out[..5], b"p\x00\x00\x00\x32");
        assert_eq!(SaslInitialResponse::decode(&out[5..]), Ok(first));
        assert_eq!(
            SaslInitialResponse::decode(b"SCRAM-SHA-256\0\xff\xff\xff\xff"),
            Ok(SaslInitialResponse {
                mechanism: "SCRAM-SHA-256",
                data: b""
            })
        );
        assert!(SaslInitialResponse::decode(b"SCRAM-SHA-256\0\x00\x00\x00\x05abc").is_err());
        out.clear();
        encode_sasl_response(&mut out, b"c=biws");
        assert_eq!(out, b"p\x00\x00\x00\x0ac=biws");
    }
}
