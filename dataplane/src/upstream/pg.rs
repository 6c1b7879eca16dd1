//! The PostgreSQL upstream leg: connect, optionally upgrade to TLS, send the start-up message
//! and log in with the gateway's own secret (SCRAM-SHA-256, md5, cleartext or trust), then
//! collect what the server says before its first ReadyForQuery.
//!
//! Wire format: <https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP>.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::scram::{self, KeyCache};
use super::UpstreamTarget;
use crate::proto::pg::{self, Authentication, BackendMessage};
use crate::runtime;
use crate::session::buffer::ReadBuf;
use crate::tls::Transport;

/// Why the upstream leg could not be opened. Messages never contain the upstream secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach upstream {address}: {source}")]
    Connect { address: String, source: io::Error },
    #[error("upstream {address} does not accept TLS")]
    TlsRefused { address: String },
    #[error("TLS to upstream {address} failed: {source}")]
    Tls { address: String, source: io::Error },
    #[error("upstream closed the connection during login")]
    Closed,
    #[error("upstream I/O failed during login: {0}")]
    Io(#[from] io::Error),
    #[error("upstream sent an invalid message during login: {0}")]
    Protocol(#[from] pg::ProtocolError),
    #[error("upstream refused the login ({sqlstate}): {message}")]
    Refused { sqlstate: String, message: String },
    #[error("upstream asked for an authentication method the gateway does not support ({0})")]
    Unsupported(String),
    #[error("upstream SCRAM exchange failed: {0}")]
    Scram(String),
    #[error("upstream login timed out")]
    Timeout,
}

impl From<scram::Error> for Error {
    fn from(e: scram::Error) -> Self {
        Error::Scram(e.to_string())
    }
}

impl Error {
    /// The SQLSTATE the client gets for this failure.
    pub fn sqlstate(&self) -> &str {
        match self {
            Error::Refused { sqlstate, .. } => sqlstate,
            _ => "08001",
        }
    }
}

/// How the upstream login proved the gateway's secret, for the session log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// The server asked for nothing.
    Trust,
    Cleartext,
    Md5,
    /// SCRAM-SHA-256 with keys derived by PBKDF2 for this login.
    ScramDerived,
    /// SCRAM-SHA-256 with keys an earlier login derived and the server verified.
    ScramCached,
}

impl std::fmt::Display for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Auth {
    pub fn as_str(self) -> &'static str {
        match self {
            Auth::Trust => "trust",
            Auth::Cleartext => "cleartext",
            Auth::Md5 => "md5",
            Auth::ScramDerived => "scram-derived",
            Auth::ScramCached => "scram-cached",
        }
    }
}

/// Where a SCRAM exchange is: each state holds what the next server message is checked with.
enum Sasl {
    None,
    /// client-first sent; waiting for server-first.
    SentFirst(scram::ClientFirst),
    /// client-final sent; waiting for server-final.
    SentFinal(scram::ClientFinal),
    /// The server's signature verified.
    Done,
}

/// A logged-in upstream connection, before its first query.
pub struct Upstream {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// How the login went.
    pub auth: Auth,
    /// ParameterStatus messages the server sent at start-up, as raw frames to relay.
    pub startup_frames: Vec<u8>,
    pub process_id: i32,
    pub secret_key: Vec<u8>,
    /// Transaction status of the first ReadyForQuery.
    pub ready_status: u8,
    /// Bytes the server sent after its first ReadyForQuery (normally none).
    pub leftover: Vec<u8>,
}

/// Opens and logs in an upstream connection for a client session.
///
/// `client_params` are the start-up parameters passed on from the client (already filtered to
/// the harmless ones); user and database always come from the target.
pub async fn connect(
    target: &UpstreamTarget,
    client_params: &[(&str, &str)],
    deadline: Duration,
    max_message: usize,
) -> Result<Upstream, Error> {
    match runtime::timeout(
        deadline,
        login(target, client_params, deadline, max_message),
    )
    .await
    {
        Some(result) => result,
        None => Err(Error::Timeout),
    }
}

async fn login(
    target: &UpstreamTarget,
    client_params: &[(&str, &str)],
    deadline: Duration,
    max_message: usize,
) -> Result<Upstream, Error> {
    let connect_err = |source| Error::Connect {
        address: target.address.clone(),
        source,
    };
    let addr = target.resolve().await.map_err(connect_err)?;
    let tcp = runtime::connect(addr, deadline)
        .await
        .map_err(connect_err)?;
    // Each message is written whole; small writes must not wait for Nagle.
    let _ = tcp.set_nodelay(true);
    let mut transport = match &target.tls {
        None => Transport::Plain(tcp),
        Some(config) => {
            let mut tcp = tcp;
            let mut out = Vec::with_capacity(8);
            pg::encode_ssl_request(&mut out);
            tcp.write_all(&out).await?;
            let mut answer = [0u8; 1];
            tcp.read_exact(&mut answer).await?;
            if answer[0] != b'S' {
                return Err(Error::TlsRefused {
                    address: target.address.clone(),
                });
            }
            Transport::connect_tls(tcp, config.clone(), &target.host)
                .await
                .map_err(|source| Error::Tls {
                    address: target.address.clone(),
                    source,
                })?
        }
    };

    let mut params: Vec<(&str, &str)> = vec![
        ("user", target.user.as_str()),
        ("database", target.database.as_str()),
    ];
    params.extend_from_slice(client_params);
    let mut out = Vec::with_capacity(256);
    pg::encode_startup(&mut out, &params);
    send(&mut transport, &mut out).await?;

    let mut buf = ReadBuf::default();
    let mut sasl = Sasl::None;
    let mut method = Auth::Trust;
    let mut startup_frames = Vec::new();
    let mut key: Option<(i32, Vec<u8>)> = None;
    loop {
        let (tag, len) = next_frame(&mut transport, &mut buf, max_message).await?;
        let frame = pg::frame(buf.filled(), max_message)?.ok_or(Error::Closed)?;
        debug_assert_eq!(frame.tag, tag);
        match BackendMessage::decode(frame)? {
            BackendMessage::Authentication(auth) => match auth {
                Authentication::Ok => {
                    if matches!(sasl, Sasl::SentFirst(_) | Sasl::SentFinal(_)) {
                        return Err(Error::Scram(
                            "the server ended the exchange without proving it knows the password"
                                .into(),
                        ));
                    }
                }
                Authentication::CleartextPassword => {
                    method = Auth::Cleartext;
                    pg::encode_password(&mut out, target.secret.expose());
                    send(&mut transport, &mut out).await?;
                }
                Authentication::Md5Password { salt } => {
                    method = Auth::Md5;
                    let hash = postgres_protocol::authentication::md5_hash(
                        target.user.as_bytes(),
                        target.secret.expose().as_bytes(),
                        salt,
                    );
                    pg::encode_password(&mut out, &hash);
                    send(&mut transport, &mut out).await?;
                }
                Authentication::Sasl { mechanisms } => {
                    if !matches!(sasl, Sasl::None) {
                        return Err(Error::Scram("SASL started twice".into()));
                    }
                    if !mechanisms.contains(&scram::MECHANISM) {
                        return Err(Error::Unsupported(format!(
                            "SASL mechanisms {mechanisms:?}"
                        )));
                    }
                    // No channel binding (gs2 header "n,,"), also when the server offers
                    // SCRAM-SHA-256-PLUS over TLS.
                    let first = scram::ClientFirst::new(target.secret.expose())?;
                    pg::SaslInitialResponse {
                        mechanism: scram::MECHANISM,
                        data: first.message(),
                    }
                    .encode(&mut out);
                    send(&mut transport, &mut out).await?;
                    sasl = Sasl::SentFirst(first);
                }
                Authentication::SaslContinue(data) => {
                    let Sasl::SentFirst(first) = std::mem::replace(&mut sasl, Sasl::None) else {
                        return Err(Error::Scram("SASLContinue out of order".into()));
                    };
                    let challenge = first.receive(data)?;
                    // The lookup returns a copy: the cache's lock is not held across the await.
                    let cached = KeyCache::shared().get(&challenge);
                    let (challenge, keys) = match cached {
                        Some(keys) => {
                            method = Auth::ScramCached;
                            (challenge, keys)
                        }
                        None => {
                            method = Auth::ScramDerived;
                            // PBKDF2 with thousands of rounds: keep it off the shard.
                            runtime::spawn_blocking(move || {
                                let keys = challenge.derive_keys();
                                (challenge, keys)
                            })
                            .await
                        }
                    };
                    let (client_final, pending) = challenge.answer(keys);
                    pg::encode_sasl_response(&mut out, &client_final);
                    send(&mut transport, &mut out).await?;
                    sasl = Sasl::SentFinal(pending);
                }
                Authentication::SaslFinal(data) => {
                    let Sasl::SentFinal(pending) = std::mem::replace(&mut sasl, Sasl::None) else {
                        return Err(Error::Scram("SASLFinal out of order".into()));
                    };
                    KeyCache::shared().insert(pending.verify(data)?);
                    sasl = Sasl::Done;
                }
                Authentication::Other { code, .. } => {
                    return Err(Error::Unsupported(format!("authentication code {code}")));
                }
            },
            BackendMessage::ErrorResponse(fields) => {
                return Err(Error::Refused {
                    sqlstate: fields.sqlstate().unwrap_or("08001").to_owned(),
                    message: scrub(fields.message().unwrap_or("login refused"), target),
                });
            }
            BackendMessage::BackendKeyData {
                process_id,
                secret_key,
            } => key = Some((process_id, secret_key.to_vec())),
            BackendMessage::ParameterStatus { .. } | BackendMessage::NoticeResponse(_) => {
                startup_frames.extend_from_slice(&buf.filled()[..len]);
            }
            BackendMessage::NegotiateProtocolVersion { .. } => {}
            BackendMessage::ReadyForQuery { status } => {
                buf.consume(len);
                let (process_id, secret_key) = key.unwrap_or((0, Vec::new()));
                return Ok(Upstream {
                    transport,
                    addr,
                    auth: method,
                    startup_frames,
                    process_id,
                    secret_key,
                    ready_status: status,
                    leftover: buf.filled().to_vec(),
                });
            }
            other => {
                return Err(Error::Unsupported(format!(
                    "unexpected message during login: {}",
                    message_name(&other)
                )))
            }
        }
        buf.consume(len);
    }
}

/// Sends a cancel request for an upstream query over a new connection, as PostgreSQL asks.
pub async fn cancel(
    addr: SocketAddr,
    process_id: i32,
    secret_key: &[u8],
    deadline: Duration,
) -> io::Result<()> {
    let mut tcp = runtime::connect(addr, deadline).await?;
    let mut out = Vec::with_capacity(16 + secret_key.len());
    pg::encode_cancel_request(&mut out, process_id, secret_key);
    tcp.write_all(&out).await?;
    tcp.flush().await?;
    // The server answers by closing; wait for that so the request is not cut short.
    let mut sink = [0u8; 16];
    let _ = runtime::timeout(deadline, tcp.read(&mut sink)).await;
    Ok(())
}

async fn send(transport: &mut Transport, out: &mut Vec<u8>) -> io::Result<()> {
    transport.write_all(out).await?;
    transport.flush().await?;
    out.clear();
    Ok(())
}

/// Reads until a whole backend message is buffered; returns its tag and length on the wire.
async fn next_frame(
    transport: &mut Transport,
    buf: &mut ReadBuf,
    max_message: usize,
) -> Result<(u8, usize), Error> {
    loop {
        match pg::frame(buf.filled(), max_message)? {
            Some(frame) => return Ok((frame.tag, frame.wire_len())),
            None => {
                let want =
                    crate::session::buffer::pg_message_len_hint(buf.filled()).min(max_message);
                if buf.fill(transport, want).await? == 0 {
                    return Err(Error::Closed);
                }
            }
        }
    }
}

/// Removes the secret from text that came from the upstream, in case a server echoes it.
fn scrub(text: &str, target: &UpstreamTarget) -> String {
    let secret = target.secret.expose();
    if secret.is_empty() {
        text.to_owned()
    } else {
        text.replace(secret, "***")
    }
}

fn message_name(m: &BackendMessage<'_>) -> &'static str {
    match m {
        BackendMessage::DataRow(_) => "DataRow",
        BackendMessage::RowDescription(_) => "RowDescription",
        BackendMessage::CommandComplete { .. } => "CommandComplete",
        BackendMessage::CopyData(_) => "CopyData",
        _ => "a message not valid before login completes",
    }
}
