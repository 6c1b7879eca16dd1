//! The PostgreSQL session pipeline: one client connection driven through the data path of
//! DESIGN.md, top to bottom.
//!
//! ```text
//! negotiate (SSL/GSS/cancel) ─▶ identity (token as password) ─▶ upstream login ─▶ relay
//!                                      relay, client → upstream:  analyse ─▶ decide ─▶ review ─▶ forward
//!                                      relay, upstream → client:  mask ─▶ record ─▶ deliver
//! ```
//!
//! Messages are framed once in each leg's read buffer and forwarded as the bytes that arrived;
//! only messages the gateway writes itself (its login exchange, errors) are encoded.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::buffer::{pg_message_len_hint, pg_startup_len_hint, ReadBuf};
use super::cancel::{CancelKey, CancelTarget};
use super::decide::{self, Gatekeeper, Verdict};
use super::pg_record::PgRecording;
use super::recording::{self, SessionRecorder};
use super::{Gateway, Shard};
use crate::identity::Principal;
use crate::policy::Decider;
use crate::proto::pg::{self, Frame, StartupRequest};
use crate::record::{Body, Connect, SessionMeta};
use crate::runtime::{self, Phase, TcpStream};
use crate::tls::Transport;
use crate::upstream::{self, UpstreamTarget};

/// Start-up parameters passed from the client to the upstream. Anything else is not
/// forwarded: notably `options` (arbitrary server settings), `replication`, and
/// `search_path` (it changes which table a bare name means, behind the policy's back).
const FORWARDED_PARAMS: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "extra_float_digits",
    "IntervalStyle",
];

/// Client encodings whose multi-byte characters can end in a backslash or quote byte, so the
/// server would read a statement differently from the analyser: refused at start-up.
const UNSAFE_ENCODINGS: &[&str] = &[
    "sjis",
    "shift_jis",
    "big5",
    "gbk",
    "gb18030",
    "uhc",
    "johab",
    "win932",
    "win936",
    "win949",
    "win950",
    "cp932",
    "cp936",
    "cp949",
    "cp950",
];

/// SQLSTATEs the gateway uses for its own errors.
mod sqlstate {
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const INVALID_AUTHORIZATION: &str = "28000";
    pub const INVALID_CATALOG_NAME: &str = "3D000";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
}

/// Why a session ended, as far as the relay can tell (logged through `Debug`).
#[derive(Debug)]
enum End {
    /// The client sent Terminate.
    ClientTerminated,
    /// The client closed its socket.
    ClientClosed,
    ClientIo(io::Error),
    ClientProtocol(pg::ProtocolError),
    /// The upstream closed its socket; `after_error` if its last message was an ErrorResponse
    /// (the client already knows why).
    UpstreamClosed {
        after_error: bool,
    },
    UpstreamIo(io::Error),
    UpstreamProtocol(pg::ProtocolError),
    Shutdown,
}

impl End {
    /// Why the session ended, in the words a recording keeps.
    fn describe(&self) -> String {
        match self {
            End::ClientTerminated => "client terminated".into(),
            End::ClientClosed => "client closed the connection".into(),
            End::ClientIo(e) => format!("client connection error: {e}"),
            End::ClientProtocol(e) => format!("invalid message from client: {e}"),
            End::UpstreamClosed { after_error: true } => "upstream closed after an error".into(),
            End::UpstreamClosed { after_error: false } => "upstream closed the connection".into(),
            End::UpstreamIo(e) => format!("upstream connection error: {e}"),
            End::UpstreamProtocol(e) => format!("invalid message from upstream: {e}"),
            End::Shutdown => "gateway shutdown".into(),
        }
    }
}

/// A session after start-up: who it is and where it goes.
struct Established {
    principal: Principal,
    target: Arc<UpstreamTarget>,
    application_name: String,
}

/// Drives one client connection from accept to close. Never panics on peer input; every
/// failure the protocol can carry reaches the client as an ErrorResponse.
pub async fn run(gw: Arc<Gateway>, shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let started = Instant::now();
    let mut client = Transport::Plain(stream);
    let mut buf = ReadBuf::default();
    let auth_deadline = Duration::from_secs(gw.config.gateway.auth_timeout_s);

    let startup = runtime::timeout(auth_deadline, startup(&gw, &mut client, &mut buf, peer)).await;
    let (established, upstream, key) = match startup {
        Some(Ok(Some(s))) => s,
        Some(Ok(None)) => return, // cancel request or client gone: nothing more to say
        Some(Err(Reject { sqlstate, message })) => {
            tracing::info!(%peer, sqlstate, reason = %message, "session refused");
            let _ = send_error(&mut client, "FATAL", sqlstate, &message).await;
            return;
        }
        None => {
            tracing::info!(%peer, "session refused: start-up timed out");
            let _ = send_error(
                &mut client,
                "FATAL",
                sqlstate::CANNOT_CONNECT_NOW,
                "start-up and authentication did not finish in time",
            )
            .await;
            return;
        }
    };
    tracing::info!(
        %peer,
        sub = %established.principal.sub,
        connection = %established.target.name,
        application = %established.application_name,
        tls = client.is_tls(),
        upstream_auth = %upstream.auth,
        "session started"
    );

    let gate = gw.policy.as_ref().map(|_| {
        Gatekeeper::new(
            established.principal.clone(),
            &established.target.name,
            gw.connection_inputs
                .get(&established.target.name)
                .cloned()
                .unwrap_or_default(),
            peer,
            &established.application_name,
        )
    });
    let recording = shard.recorder.as_ref().map(|queue| {
        let principal = &established.principal;
        let rec = SessionRecorder::new(
            queue.clone(),
            SessionMeta {
                id: recording::new_session_id(),
                principal: principal.sub.clone(),
                groups: principal.groups.clone(),
                connection: established.target.name.clone(),
                protocol: "postgres".to_owned(),
            },
        );
        rec.emit(Body::Connect(Connect {
            client_addr: peer.ip().to_string(),
            application_name: established.application_name.clone(),
            tls: client.is_tls(),
            principal_kind: principal.kind.clone(),
        }));
        PgRecording::new(rec)
    });
    let end = relay(
        &gw,
        &shard,
        gate.as_ref(),
        recording.as_ref(),
        client,
        upstream,
        buf,
    )
    .await;
    drop(key);
    if let Some(rec) = &recording {
        let reason = end.describe();
        rec.abandon(&reason);
        rec.rec.disconnect(reason).await;
    }
    tracing::info!(
        %peer,
        sub = %established.principal.sub,
        connection = %established.target.name,
        duration_ms = started.elapsed().as_millis() as u64,
        end = ?end,
        "session ended"
    );
}

/// A refusal during start-up; sent to the client as a FATAL ErrorResponse.
struct Reject {
    sqlstate: &'static str,
    message: String,
}

fn reject(sqlstate: &'static str, message: impl Into<String>) -> Reject {
    Reject {
        sqlstate,
        message: message.into(),
    }
}

type Started = (Established, upstream::pg::Upstream, CancelKey);

/// Negotiation, identity and upstream login. `Ok(None)`: the connection was a cancel request
/// or the client left; nothing is owed to it.
async fn startup(
    gw: &Arc<Gateway>,
    client: &mut Transport,
    buf: &mut ReadBuf,
    peer: SocketAddr,
) -> Result<Option<Started>, Reject> {
    let max = gw.config.gateway.max_message_bytes;

    // 1. Negotiate: SSLRequest / GSSENCRequest / CancelRequest until the StartupMessage.
    let mut negotiations = 0;
    let params: Vec<(String, String)> = loop {
        negotiations += 1;
        if negotiations > 4 {
            return Err(reject(
                sqlstate::PROTOCOL_VIOLATION,
                "too many negotiation requests",
            ));
        }
        let used = loop {
            match pg::startup(buf.filled()) {
                Ok(Some((_, used))) => break used,
                Ok(None) => {
                    let want = pg_startup_len_hint(buf.filled()).min(pg::MAX_STARTUP_LEN);
                    if !read_more(client, buf, want).await {
                        return Ok(None);
                    }
                }
                Err(e) => {
                    return Err(reject(
                        sqlstate::PROTOCOL_VIOLATION,
                        format!("invalid start-up packet: {e}"),
                    ))
                }
            }
        };
        // Parse again to end the borrow of `buf` before it is changed.
        let request = match pg::startup(buf.filled()) {
            Ok(Some((request, _))) => request,
            _ => {
                return Err(reject(
                    sqlstate::PROTOCOL_VIOLATION,
                    "invalid start-up packet",
                ))
            }
        };
        match request {
            StartupRequest::Ssl => {
                buf.consume(used);
                if !buf.is_empty() {
                    // Bytes after an SSLRequest would be read as if they had been encrypted.
                    return Err(reject(
                        sqlstate::PROTOCOL_VIOLATION,
                        "unencrypted data after SSL request",
                    ));
                }
                match (&gw.tls, &*client) {
                    (Some(config), Transport::Plain(_)) => {
                        write_all(client, b"S").await.map_err(|_| client_gone())?;
                        let plain = std::mem::replace(client, Transport::Closed);
                        let Transport::Plain(tcp) = plain else {
                            return Ok(None);
                        };
                        match Transport::accept_tls(tcp, Arc::clone(config)).await {
                            Ok(tls) => *client = tls,
                            Err(e) => {
                                tracing::info!(%peer, error = %e, "client TLS handshake failed");
                                return Ok(None);
                            }
                        }
                    }
                    _ => write_all(client, b"N").await.map_err(|_| client_gone())?,
                }
            }
            StartupRequest::GssEnc => {
                buf.consume(used);
                write_all(client, b"N").await.map_err(|_| client_gone())?;
            }
            StartupRequest::Cancel {
                process_id,
                secret_key,
            } => {
                let target = gw.cancels.lookup(process_id, secret_key);
                forward_cancel(gw, target, peer).await;
                return Ok(None);
            }
            StartupRequest::Startup(s) => {
                let major = s.version >> 16;
                let minor = s.version & 0xffff;
                if major != 3 {
                    return Err(reject(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        format!(
                            "unsupported frontend protocol {major}.{minor}: the gateway speaks 3.0"
                        ),
                    ));
                }
                let params: Vec<(String, String)> = s
                    .params
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
                buf.consume(used);
                if minor > 0 {
                    let unrecognized: Vec<&str> = params
                        .iter()
                        .filter(|(k, _)| k.starts_with("_pq_."))
                        .map(|(k, _)| k.as_str())
                        .collect();
                    let mut out = Vec::new();
                    pg::BackendMessage::NegotiateProtocolVersion {
                        newest_minor: 0,
                        unrecognized,
                    }
                    .encode(&mut out);
                    write_all(client, &out).await.map_err(|_| client_gone())?;
                }
                break params;
            }
        }
    };
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };

    // 2. Which connection, and may a secret travel on this transport?
    let user = param("user")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            reject(
                sqlstate::INVALID_AUTHORIZATION,
                "no user name in the start-up message",
            )
        })?
        .to_owned();
    if param("replication").is_some_and(|r| !matches!(r, "false" | "off" | "0" | "no")) {
        return Err(reject(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "replication connections are not supported by the gateway",
        ));
    }
    if let Some(encoding) = param("client_encoding") {
        let normalised = encoding.to_ascii_lowercase().replace(['-', ' '], "_");
        if UNSAFE_ENCODINGS.contains(&normalised.as_str()) {
            return Err(reject(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("client_encoding {encoding} is not supported by the gateway: use UTF8"),
            ));
        }
    }
    let database = param("database").unwrap_or(&user).to_owned();
    let target = gw.upstreams.get(&database).cloned().ok_or_else(|| {
        reject(
            sqlstate::INVALID_CATALOG_NAME,
            format!("connection \"{database}\" does not exist on this gateway"),
        )
    })?;
    let plaintext_allowed =
        gw.config.gateway.allow_plaintext_secrets_on_loopback && peer.ip().is_loopback();
    if !client.is_tls() && !plaintext_allowed {
        return Err(reject(
            sqlstate::INVALID_AUTHORIZATION,
            "the gateway accepts tokens only over TLS: connect with sslmode=require",
        ));
    }

    // 3. Identity: the token arrives as the cleartext password.
    let mut out = Vec::with_capacity(256);
    pg::encode_auth_cleartext(&mut out);
    write_all(client, &out).await.map_err(|_| client_gone())?;
    let token = loop {
        match pg::frame(buf.filled(), max) {
            Ok(Some(frame)) => {
                if frame.tag != b'p' {
                    return Err(reject(
                        sqlstate::PROTOCOL_VIOLATION,
                        "expected a password message carrying the token",
                    ));
                }
                let token = pg::password_text(frame.body)
                    .map_err(|_| reject(sqlstate::PROTOCOL_VIOLATION, "invalid password message"))?
                    .to_owned();
                let len = frame.wire_len();
                buf.consume(len);
                break token;
            }
            Ok(None) => {
                let want = pg_message_len_hint(buf.filled()).min(max);
                if !read_more(client, buf, want).await {
                    return Ok(None);
                }
            }
            Err(e) => {
                return Err(reject(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!("invalid message: {e}"),
                ))
            }
        }
    };
    let principal = gw.verifier.verify(&token).map_err(|e| {
        reject(
            sqlstate::INVALID_AUTHORIZATION,
            format!("token rejected: {e}"),
        )
    })?;
    drop(token);
    if principal.user != user {
        return Err(reject(
            sqlstate::INVALID_AUTHORIZATION,
            format!(
                "user \"{user}\" does not match the token (it names \"{}\")",
                principal.user
            ),
        ));
    }

    // 4. Upstream login with the gateway's own secret.
    let forwarded: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| FORWARDED_PARAMS.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let upstream = upstream::pg::connect(
        &target,
        &forwarded,
        Duration::from_secs(gw.config.gateway.upstream_connect_timeout_s),
        max,
    )
    .await
    .map_err(|e| {
        tracing::warn!(connection = %target.name, error = %e, "upstream login failed");
        Reject {
            sqlstate: sqlstate_static(e.sqlstate()),
            message: format!("cannot open connection \"{}\": {e}", target.name),
        }
    })?;

    // 5. Tell the client it is in: our own cancel key, the server's parameters.
    let key = gw.cancels.register(CancelTarget {
        upstream: upstream.addr,
        process_id: upstream.process_id,
        secret_key: upstream.secret_key.clone(),
    });
    out.clear();
    pg::encode_auth_ok(&mut out);
    out.extend_from_slice(&upstream.startup_frames);
    pg::encode_backend_key_data(&mut out, key.process_id, &key.secret_key);
    pg::encode_ready_for_query(&mut out, upstream.ready_status);
    write_all(client, &out).await.map_err(|_| client_gone())?;

    let application_name = param("application_name").unwrap_or("").to_owned();
    Ok(Some((
        Established {
            principal,
            target,
            application_name,
        },
        upstream,
        key,
    )))
}

/// Reads more start-up bytes from the client; `false` when it closed or failed, after which
/// there is nobody to answer.
async fn read_more(client: &mut Transport, buf: &mut ReadBuf, want: usize) -> bool {
    matches!(buf.fill(client, want).await, Ok(n) if n > 0)
}

/// The client left in the middle of start-up; there is nobody to tell.
fn client_gone() -> Reject {
    reject(sqlstate::CONNECTION_FAILURE, "client went away")
}

/// Keeps well-known upstream SQLSTATEs, maps anything else to a generic login failure.
fn sqlstate_static(code: &str) -> &'static str {
    match code {
        "28P01" => "28P01",
        "28000" => "28000",
        "3D000" => "3D000",
        "53300" => "53300",
        "57P03" => "57P03",
        "08001" => "08001",
        _ => "08004",
    }
}

async fn forward_cancel(gw: &Gateway, target: Option<CancelTarget>, peer: SocketAddr) {
    let Some(target) = target else {
        tracing::info!(%peer, "cancel request with an unknown key ignored");
        return;
    };
    let deadline = Duration::from_secs(gw.config.gateway.upstream_connect_timeout_s);
    if let Err(e) = upstream::pg::cancel(
        target.upstream,
        target.process_id,
        &target.secret_key,
        deadline,
    )
    .await
    {
        tracing::warn!(%peer, error = %e, "forwarding a cancel request failed");
    } else {
        tracing::info!(%peer, "cancel request forwarded");
    }
}

/// Proof that the decide stage let a client message through. `forward` takes one, so no code
/// path reaches the upstream without a decision.
struct Permit(());

/// What the client → upstream stages make of one message.
enum Step {
    /// Forward the message as it arrived.
    Forward(Permit),
    /// Drop it (the rest of a pipeline whose Parse was refused).
    Drop,
    /// Send `ClientStages::replacement` in its place (a refusal the upstream will raise).
    Replace,
}

/// What the two legs of a session share: how many sync points (Query, Sync, FunctionCall;
/// each answered by exactly one ReadyForQuery) went upstream, and which of them end a
/// refusal pipeline whose ParseComplete and BindComplete the client must not see.
#[derive(Default)]
struct Legs {
    syncs_sent: Cell<u64>,
    refusals: RefCell<VecDeque<u64>>,
}

/// The client → upstream stages, per message in arrival order: analyse → decide → (review),
/// and what the recording keeps of each.
struct ClientStages<'s> {
    /// `None` when the policy stage is turned off in the configuration.
    gate: Option<(&'s Gatekeeper, &'s RefCell<Decider>)>,
    /// `None` when recording is turned off.
    rec: Option<&'s PgRecording>,
    legs: &'s Legs,
    /// After a refused Parse: the refusal, until the pipeline's Sync.
    refused: Option<(String, String)>,
    replacement: Vec<u8>,
}

impl ClientStages<'_> {
    fn step(&mut self, frame: Frame<'_>) -> Result<Step, pg::ProtocolError> {
        if let Some((message, detail)) = &self.refused {
            // The server would skip everything up to Sync after a failed Parse; so do we.
            if frame.tag != b'S' {
                return Ok(Step::Drop);
            }
            self.replacement.clear();
            decide::refusal_pipeline(&mut self.replacement, message, detail);
            let sync_point = self.sync_point();
            self.legs.refusals.borrow_mut().push_back(sync_point);
            self.refused = None;
            return Ok(Step::Replace);
        }
        if self.gate.is_none() && self.rec.is_none() {
            // Nothing to decide or record: only the sync points are counted.
            if matches!(frame.tag, b'Q' | b'S' | b'F') {
                self.sync_point();
            }
            return Ok(Step::Forward(Permit(())));
        }
        let verdict = match frame.tag {
            b'Q' => {
                let sync = self.sync_point();
                let pg::FrontendMessage::Query { sql } = pg::FrontendMessage::decode(frame)? else {
                    return Err(pg::ProtocolError::Malformed("query"));
                };
                let decided = self.decide_sql(sql);
                if let Some(rec) = self.rec {
                    rec.query(sql, decided.fingerprint, decided.record, sync);
                }
                decided.verdict
            }
            b'P' => {
                let pg::FrontendMessage::Parse { name, sql, .. } =
                    pg::FrontendMessage::decode(frame)?
                else {
                    return Err(pg::ProtocolError::Malformed("parse"));
                };
                let decided = self.decide_sql(sql);
                match decided.verdict {
                    Verdict::Allow => {
                        if let Some(rec) = self.rec {
                            rec.parse(name, sql, decided.fingerprint, decided.record);
                        }
                        Verdict::Allow
                    }
                    Verdict::Deny { message, detail } => {
                        if let Some(rec) = self.rec {
                            let sync = self.legs.syncs_sent.get();
                            rec.parse_refused(sql, decided.fingerprint, decided.record, sync);
                        }
                        self.refused = Some((message, detail));
                        return Ok(Step::Drop);
                    }
                }
            }
            b'F' => {
                let sync = self.sync_point();
                let pg::FrontendMessage::FunctionCall { function_oid, .. } =
                    pg::FrontendMessage::decode(frame)?
                else {
                    return Err(pg::ProtocolError::Malformed("function call"));
                };
                let decided = match self.gate {
                    Some((gate, decider)) => {
                        gate.decide_function_call(&mut decider.borrow_mut(), function_oid)
                    }
                    None => decide::Decided {
                        verdict: Verdict::Allow,
                        fingerprint: decide::function_call_hash(function_oid),
                        record: None,
                    },
                };
                if let Some(rec) = self.rec {
                    rec.function_call(function_oid, decided.fingerprint, decided.record, sync);
                }
                decided.verdict
            }
            b'S' => {
                self.sync_point();
                Verdict::Allow
            }
            b'B' | b'E' | b'C' if self.rec.is_some() => {
                if let Some(rec) = self.rec {
                    match pg::FrontendMessage::decode(frame)? {
                        pg::FrontendMessage::Bind(bind) => rec.bind(&bind),
                        pg::FrontendMessage::Execute { portal, .. } => {
                            rec.execute(portal, self.legs.syncs_sent.get());
                        }
                        pg::FrontendMessage::Close { kind, name } => rec.close(kind, name),
                        _ => {}
                    }
                }
                Verdict::Allow
            }
            _ => Verdict::Allow,
        };
        match verdict {
            Verdict::Allow => Ok(Step::Forward(Permit(()))),
            Verdict::Deny { message, detail } => {
                self.replacement.clear();
                decide::refusal_query(&mut self.replacement, &message, &detail);
                Ok(Step::Replace)
            }
        }
    }

    /// Decides a SQL text, or lets it through when the policy stage is off (the fingerprint
    /// is still computed for the recording).
    fn decide_sql(&self, sql: &str) -> decide::Decided {
        match self.gate {
            Some((gate, decider)) => gate.decide_sql(&mut decider.borrow_mut(), sql),
            None => decide::Decided {
                verdict: Verdict::Allow,
                fingerprint: crate::sql::fingerprint_hash(sql, crate::sql::Dialect::Postgres),
                record: None,
            },
        }
    }

    /// Counts a sync point sent upstream and returns its index.
    fn sync_point(&self) -> u64 {
        let n = self.legs.syncs_sent.get();
        self.legs.syncs_sent.set(n + 1);
        n
    }
}

/// Relays messages both ways until one side ends or the gateway closes.
async fn relay(
    gw: &Gateway,
    shard: &Shard,
    gate: Option<&Gatekeeper>,
    rec: Option<&PgRecording>,
    client: Transport,
    upstream: upstream::pg::Upstream,
    client_buf: ReadBuf,
) -> End {
    let max = gw.config.gateway.max_message_bytes;
    let (mut client_r, mut client_w) = runtime::split(client);
    let (mut up_r, mut up_w) = runtime::split(upstream.transport);
    let mut up_buf = ReadBuf::default();
    if !upstream.leftover.is_empty() {
        up_buf =
            ReadBuf::with_capacity(upstream.leftover.len().max(super::buffer::INITIAL_CAPACITY));
        let mut src = futures_lite::io::Cursor::new(upstream.leftover);
        let _ = up_buf.fill(&mut src, 0).await;
    }
    // True while a message to the client is half written: no error may be injected then.
    let client_mid_write = Cell::new(false);
    let legs = Legs::default();
    let stages = ClientStages {
        gate: gate.zip(shard.decider.as_ref()),
        rec,
        legs: &legs,
        refused: None,
        replacement: Vec::new(),
    };

    let end = {
        let to_upstream = client_to_upstream(&mut client_r, &mut up_w, client_buf, max, stages);
        let to_client = upstream_to_client(
            &mut up_r,
            &mut client_w,
            up_buf,
            max,
            &client_mid_write,
            &legs,
            rec,
        );
        let closing = async {
            shard.signal.reached(Phase::Closing).await;
            End::Shutdown
        };
        futures_lite::future::or(futures_lite::future::or(to_upstream, to_client), closing).await
    };

    let notice = match &end {
        End::ClientProtocol(e) => Some((
            sqlstate::PROTOCOL_VIOLATION,
            format!("invalid message from client: {e}"),
        )),
        End::UpstreamClosed { after_error: false } | End::UpstreamIo(_) => Some((
            sqlstate::CONNECTION_FAILURE,
            "the upstream connection closed unexpectedly".to_owned(),
        )),
        End::UpstreamProtocol(e) => Some((
            sqlstate::PROTOCOL_VIOLATION,
            format!("the upstream sent an invalid message: {e}"),
        )),
        End::Shutdown => Some((
            sqlstate::ADMIN_SHUTDOWN,
            "terminating connection because the gateway is shutting down".to_owned(),
        )),
        _ => None,
    };
    if let Some((code, message)) = notice {
        if !client_mid_write.get() {
            let mut out = Vec::new();
            pg::encode_error(&mut out, "FATAL", code, &message, None, None);
            let _ = runtime::timeout(Duration::from_secs(1), async {
                client_w.write_all(&out).await?;
                client_w.flush().await
            })
            .await;
        }
    }
    if !matches!(
        end,
        End::ClientTerminated | End::UpstreamClosed { .. } | End::UpstreamIo(_)
    ) {
        // Say goodbye so the server ends the backend at once instead of on its next write.
        let mut out = Vec::with_capacity(5);
        pg::FrontendMessage::Terminate.encode(&mut out);
        let _ = runtime::timeout(Duration::from_millis(500), async {
            up_w.write_all(&out).await?;
            up_w.flush().await
        })
        .await;
    }
    let _ = runtime::timeout(Duration::from_millis(500), client_w.close()).await;
    end
}

async fn client_to_upstream<R, W>(
    client: &mut R,
    upstream: &mut W,
    mut buf: ReadBuf,
    max: usize,
    mut stages: ClientStages<'_>,
) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        // Every whole message that has arrived passes the stages in order. Runs of forwarded
        // messages go upstream as the bytes that arrived, in as few writes as possible.
        let filled = buf.filled();
        let mut pos = 0;
        let mut span = 0;
        let mut terminate = false;
        let mut wrote = false;
        loop {
            let frame = match pg::frame(&filled[pos..], max) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return End::ClientProtocol(e),
            };
            let start = pos;
            pos += frame.wire_len();
            let step = match stages.step(frame) {
                Ok(step) => step,
                Err(e) => return End::ClientProtocol(e),
            };
            match step {
                Step::Forward(_permit) => {}
                Step::Drop | Step::Replace => {
                    if let Err(e) = forward(upstream, &filled[span..start], Permit(())).await {
                        return End::UpstreamIo(e);
                    }
                    if matches!(step, Step::Replace) {
                        if let Err(e) = upstream.write_all(&stages.replacement).await {
                            return End::UpstreamIo(e);
                        }
                    }
                    span = pos;
                    wrote = true;
                }
            }
            if frame.tag == b'X' {
                terminate = true;
                break;
            }
        }
        if span < pos || wrote {
            let sent = async {
                forward(upstream, &filled[span..pos], Permit(())).await?;
                upstream.flush().await
            }
            .await;
            if let Err(e) = sent {
                return End::UpstreamIo(e);
            }
        }
        buf.consume(pos);
        if let Some(rec) = stages.rec {
            rec.rec.count_from_client(pos);
        }
        if terminate {
            return End::ClientTerminated;
        }
        if let Some(rec) = stages.rec.filter(|r| r.rec.is_backlogged()) {
            rec.rec.flush().await;
        }
        buf.shrink_if_idle();
        let want = pg_message_len_hint(buf.filled()).min(max);
        match buf.fill(client, want).await {
            Ok(0) => return End::ClientClosed,
            Ok(_) => {}
            Err(e) => return End::ClientIo(e),
        }
    }
}

/// The forward stage: client bytes the decide stage let through, unchanged, to the upstream.
async fn forward<W: AsyncWrite + Unpin>(
    upstream: &mut W,
    bytes: &[u8],
    _permit: Permit,
) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    upstream.write_all(bytes).await
}

/// ParseComplete and BindComplete: bodiless, so their bytes are constant.
const PARSE_COMPLETE: [u8; 5] = [b'1', 0, 0, 0, 4];
const BIND_COMPLETE: [u8; 5] = [b'2', 0, 0, 0, 4];

async fn upstream_to_client<R, W>(
    upstream: &mut R,
    client: &mut W,
    mut buf: ReadBuf,
    max: usize,
    mid_write: &Cell<bool>,
    legs: &Legs,
    rec: Option<&PgRecording>,
) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut last_tag = 0u8;
    // ReadyForQuery messages seen: the index of the sync point being answered.
    let mut answered: u64 = 0;
    // ParseComplete/BindComplete held back while answering a refusal pipeline: dropped if
    // the refusal follows them, delivered otherwise.
    let mut held = 0u8;
    loop {
        let filled = buf.filled();
        let mut pos = 0;
        let mut span = 0;
        let mut parts: Vec<(usize, usize)> = Vec::new();
        let mut extra: Vec<u8> = Vec::new();
        loop {
            let frame = match pg::frame(&filled[pos..], max) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return End::UpstreamProtocol(e),
            };
            let start = pos;
            pos += frame.wire_len();
            last_tag = frame.tag;
            // Only errors are looked into: the gateway's refusals are shown without their
            // PL/pgSQL context.
            let refusal = if frame.tag == b'E' {
                decide::client_refusal(frame)
            } else {
                None
            };
            let refusing = legs.refusals.borrow().front() == Some(&answered);
            if refusing || held > 0 {
                // The slow path, only while a refusal pipeline is being answered.
                let drop_frame = match (frame.tag, held) {
                    (b'1', 0) if refusing => {
                        held = 1;
                        true
                    }
                    (b'2', 1) => {
                        held = 2;
                        true
                    }
                    (b'E', 2) if refusal.is_some() => {
                        held = 0;
                        false
                    }
                    _ => {
                        // Not the refusal after all: deliver what was held, in order.
                        parts.push((span, start));
                        span = start;
                        if held >= 1 {
                            extra.extend_from_slice(&PARSE_COMPLETE);
                        }
                        if held >= 2 {
                            extra.extend_from_slice(&BIND_COMPLETE);
                        }
                        parts.push((usize::MAX, extra.len()));
                        held = 0;
                        if frame.tag == b'1' && refusing {
                            held = 1;
                            true
                        } else {
                            false
                        }
                    }
                };
                if drop_frame {
                    parts.push((span, start));
                    span = pos;
                }
            }
            if let Some(clean) = refusal {
                parts.push((span, start));
                extra.extend_from_slice(&clean);
                parts.push((usize::MAX, extra.len()));
                span = pos;
            }
            if let Some(rec) = rec {
                rec.backend(frame, frame.wire_len());
            }
            if frame.tag == b'Z' {
                if refusing {
                    legs.refusals.borrow_mut().pop_front();
                }
                answered += 1;
            }
        }
        if pos > 0 {
            mid_write.set(true);
            let written = async {
                if parts.is_empty() {
                    // The common case: every message as it arrived, in one write.
                    client.write_all(&filled[..pos]).await?;
                    return client.flush().await;
                }
                parts.push((span, pos));
                let mut extra_at = 0;
                for &(from, to) in &parts {
                    if from == usize::MAX {
                        client.write_all(&extra[extra_at..to]).await?;
                        extra_at = to;
                    } else if from < to {
                        client.write_all(&filled[from..to]).await?;
                    }
                }
                client.flush().await
            }
            .await;
            mid_write.set(false);
            if let Err(e) = written {
                return End::ClientIo(e);
            }
            buf.consume(pos);
            if let Some(rec) = rec {
                rec.rec.count_to_client(pos);
            }
        }
        if let Some(rec) = rec.filter(|r| r.rec.is_backlogged()) {
            rec.rec.flush().await;
        }
        buf.shrink_if_idle();
        let want = pg_message_len_hint(buf.filled()).min(max);
        match buf.fill(upstream, want).await {
            Ok(0) => {
                return End::UpstreamClosed {
                    after_error: last_tag == b'E',
                }
            }
            Ok(_) => {}
            Err(e) => return End::UpstreamIo(e),
        }
    }
}

async fn write_all(client: &mut Transport, bytes: &[u8]) -> io::Result<()> {
    client.write_all(bytes).await?;
    client.flush().await
}

async fn send_error(
    client: &mut Transport,
    severity: &str,
    code: &str,
    message: &str,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(64 + message.len());
    pg::encode_error(&mut out, severity, code, message, None, None);
    write_all(client, &out).await?;
    let _ = client.close().await;
    Ok(())
}
