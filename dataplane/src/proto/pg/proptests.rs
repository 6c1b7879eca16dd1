//! Codec stage, property tests over every message the PostgreSQL codec knows.
//!
//! Three properties, each against generated messages and generated garbage:
//! 1. `decode(encode(m)) == m` for every frontend, backend and start-up message variant;
//! 2. no input makes `frame`, `startup`, either `decode` or DataRow / Fields iteration panic;
//! 3. any strict prefix of a valid message is "need more bytes", never a different message.
//!
//! Generated strings and byte runs are leaked so messages can borrow them for `'static`, as they
//! borrow the read buffer in the gateway.

use super::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

fn leak_str(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn leak_bytes(b: Vec<u8>) -> &'static [u8] {
    Box::leak(b.into_boxed_slice())
}

/// Text without NUL: a protocol `String` cannot carry one.
fn text() -> impl Strategy<Value = &'static str> {
    "[^\\x00]{0,12}".prop_map(leak_str)
}

fn nonempty_text() -> impl Strategy<Value = &'static str> {
    "[^\\x00]{1,12}".prop_map(leak_str)
}

fn bytes(max: usize) -> impl Strategy<Value = &'static [u8]> {
    vec(any::<u8>(), 0..max).prop_map(leak_bytes)
}

fn value() -> impl Strategy<Value = Option<&'static [u8]>> {
    option::of(bytes(16))
}

fn format() -> impl Strategy<Value = i16> {
    prop_oneof![Just(0i16), Just(1i16)]
}

fn target() -> impl Strategy<Value = u8> {
    prop_oneof![Just(b'S'), Just(b'P')]
}

/// Values with a format list that is empty, one code, or one code per value.
fn values_with_formats() -> impl Strategy<Value = (Vec<i16>, Vec<Option<&'static [u8]>>)> {
    vec(value(), 0..6).prop_flat_map(|values| {
        let n = values.len();
        (prop_oneof![Just(0), Just(1), Just(n)], Just(values))
            .prop_flat_map(|(f, values)| (vec(format(), f), Just(values)))
    })
}

fn frontend_message() -> impl Strategy<Value = FrontendMessage<'static>> {
    prop_oneof![
        text().prop_map(|sql| FrontendMessage::Query { sql }),
        (text(), text(), vec(any::<u32>(), 0..6)).prop_map(|(name, sql, param_types)| {
            FrontendMessage::Parse {
                name,
                sql,
                param_types,
            }
        }),
        (text(), text(), values_with_formats(), vec(format(), 0..6)).prop_map(
            |(portal, statement, (param_formats, params), result_formats)| {
                FrontendMessage::Bind(Bind {
                    portal,
                    statement,
                    param_formats,
                    params,
                    result_formats,
                })
            }
        ),
        (text(), any::<i32>())
            .prop_map(|(portal, max_rows)| FrontendMessage::Execute { portal, max_rows }),
        (target(), text()).prop_map(|(kind, name)| FrontendMessage::Describe { kind, name }),
        (target(), text()).prop_map(|(kind, name)| FrontendMessage::Close { kind, name }),
        Just(FrontendMessage::Sync),
        Just(FrontendMessage::Flush),
        Just(FrontendMessage::Terminate),
        bytes(64).prop_map(FrontendMessage::CopyData),
        Just(FrontendMessage::CopyDone),
        text().prop_map(|message| FrontendMessage::CopyFail { message }),
        (any::<u32>(), values_with_formats(), format()).prop_map(
            |(function_oid, (arg_formats, args), result_format)| FrontendMessage::FunctionCall {
                function_oid,
                arg_formats,
                args,
                result_format,
            }
        ),
        bytes(64).prop_map(FrontendMessage::Password),
    ]
}

fn authentication() -> impl Strategy<Value = Authentication<'static>> {
    prop_oneof![
        Just(Authentication::Ok),
        Just(Authentication::CleartextPassword),
        any::<[u8; 4]>().prop_map(|salt| Authentication::Md5Password { salt }),
        vec(nonempty_text(), 0..4).prop_map(|mechanisms| Authentication::Sasl { mechanisms }),
        bytes(32).prop_map(Authentication::SaslContinue),
        bytes(32).prop_map(Authentication::SaslFinal),
        (
            any::<i32>().prop_filter("codes with their own variant", |c| ![0, 3, 5, 10, 11, 12]
                .contains(c)),
            bytes(16)
        )
            .prop_map(|(code, data)| Authentication::Other { code, data }),
    ]
}

/// Lazy bodies are built the way the gateway gets them: as bytes, then decoded.
fn copy_response() -> impl Strategy<Value = CopyResponse<'static>> {
    (0u8..=1, vec(format(), 0..6)).prop_map(|(format, columns)| {
        let mut body = vec![format];
        body.extend_from_slice(&(columns.len() as u16).to_be_bytes());
        for c in columns {
            body.extend_from_slice(&c.to_be_bytes());
        }
        CopyResponse::decode(leak_bytes(body)).expect("valid CopyResponse")
    })
}

fn data_row() -> impl Strategy<Value = DataRow<'static>> {
    vec(value(), 0..10).prop_map(|values| {
        let mut out = Vec::new();
        encode_data_row(&mut out, values);
        DataRow::decode(leak_bytes(out.split_off(5))).expect("valid DataRow")
    })
}

fn fields() -> impl Strategy<Value = Fields<'static>> {
    vec((1u8..=255, text()), 0..6).prop_map(|pairs| {
        let mut body = Vec::new();
        fields::encode_fields_body(&mut body, pairs);
        Fields::decode(leak_bytes(body)).expect("valid fields")
    })
}

fn field_description() -> impl Strategy<Value = FieldDescription<'static>> {
    (
        text(),
        any::<u32>(),
        any::<i16>(),
        any::<u32>(),
        any::<i16>(),
        any::<i32>(),
        format(),
    )
        .prop_map(
            |(name, table_oid, column, type_oid, type_size, type_modifier, format)| {
                FieldDescription {
                    name,
                    table_oid,
                    column,
                    type_oid,
                    type_size,
                    type_modifier,
                    format,
                }
            },
        )
}

fn backend_message() -> impl Strategy<Value = BackendMessage<'static>> {
    prop_oneof![
        authentication().prop_map(BackendMessage::Authentication),
        (any::<i32>(), vec(any::<u8>(), 4..=256).prop_map(leak_bytes)).prop_map(
            |(process_id, secret_key)| BackendMessage::BackendKeyData {
                process_id,
                secret_key
            }
        ),
        Just(BackendMessage::BindComplete),
        Just(BackendMessage::CloseComplete),
        text().prop_map(|tag| BackendMessage::CommandComplete { tag }),
        bytes(64).prop_map(BackendMessage::CopyData),
        Just(BackendMessage::CopyDone),
        copy_response().prop_map(BackendMessage::CopyInResponse),
        copy_response().prop_map(BackendMessage::CopyOutResponse),
        copy_response().prop_map(BackendMessage::CopyBothResponse),
        data_row().prop_map(BackendMessage::DataRow),
        Just(BackendMessage::EmptyQueryResponse),
        fields().prop_map(BackendMessage::ErrorResponse),
        fields().prop_map(BackendMessage::NoticeResponse),
        value().prop_map(BackendMessage::FunctionCallResponse),
        (any::<i32>(), vec(text(), 0..4)).prop_map(|(newest_minor, unrecognized)| {
            BackendMessage::NegotiateProtocolVersion {
                newest_minor,
                unrecognized,
            }
        }),
        Just(BackendMessage::NoData),
        (any::<i32>(), text(), text()).prop_map(|(process_id, channel, payload)| {
            BackendMessage::NotificationResponse {
                process_id,
                channel,
                payload,
            }
        }),
        vec(any::<u32>(), 0..6).prop_map(BackendMessage::ParameterDescription),
        (text(), text()).prop_map(|(name, value)| BackendMessage::ParameterStatus { name, value }),
        Just(BackendMessage::ParseComplete),
        Just(BackendMessage::PortalSuspended),
        prop_oneof![Just(b'I'), Just(b'T'), Just(b'E')]
            .prop_map(|status| BackendMessage::ReadyForQuery { status }),
        vec(field_description(), 0..10).prop_map(BackendMessage::RowDescription),
    ]
}

fn startup_request() -> impl Strategy<Value = StartupRequest<'static>> {
    prop_oneof![
        Just(StartupRequest::Ssl),
        Just(StartupRequest::GssEnc),
        (any::<i32>(), vec(any::<u8>(), 4..=256).prop_map(leak_bytes)).prop_map(
            |(process_id, secret_key)| StartupRequest::Cancel {
                process_id,
                secret_key
            }
        ),
        (
            0u32..=2,
            proptest::collection::btree_map("[^\\x00]{1,12}", "[^\\x00]{0,12}", 0..8)
        )
            .prop_map(|(minor, params)| {
                let params = params
                    .into_iter()
                    .map(|(n, v)| (leak_str(n), leak_str(v)))
                    .collect();
                StartupRequest::Startup(Startup {
                    version: PROTOCOL_3_0 | minor,
                    params,
                })
            }),
    ]
}

/// Decodes the one tagged message in `bytes`, checking the frame spans all of it and that no
/// strict prefix is taken for a message.
fn framed(bytes: &[u8]) -> Frame<'_> {
    for n in 0..bytes.len() {
        assert_eq!(
            frame(bytes.get(..n).unwrap_or_default(), usize::MAX),
            Ok(None),
            "prefix of {n} bytes"
        );
    }
    let f = frame(bytes, usize::MAX)
        .expect("valid frame")
        .expect("whole message");
    assert_eq!(f.wire_len(), bytes.len());
    f
}

/// Checks every iterator over a decoded message runs to its end without panicking.
fn walk(m: &BackendMessage<'_>) {
    match m {
        BackendMessage::DataRow(row) => {
            assert_eq!(row.iter().count(), row.len());
            assert!(
                row.iter().all(|v| v.is_ok()),
                "a decoded row iterates without error"
            );
        }
        BackendMessage::ErrorResponse(f) | BackendMessage::NoticeResponse(f) => {
            let _ = (f.iter().count(), f.severity(), f.sqlstate(), f.message());
        }
        BackendMessage::CopyInResponse(c) => assert_eq!(c.column_formats().count(), c.columns()),
        _ => {}
    }
}

proptest! {
    #[test]
    fn frontend_round_trip(m in frontend_message()) {
        let mut out = Vec::new();
        m.encode(&mut out);
        let f = framed(&out);
        prop_assert_eq!(f.tag, m.tag());
        prop_assert_eq!(FrontendMessage::decode(f), Ok(m));
    }

    #[test]
    fn backend_round_trip(m in backend_message()) {
        let mut out = Vec::new();
        m.encode(&mut out);
        let f = framed(&out);
        prop_assert_eq!(f.tag, m.tag());
        let back = BackendMessage::decode(f);
        prop_assert_eq!(&back, &Ok(m));
        if let Ok(back) = back {
            walk(&back);
        }
    }

    #[test]
    fn data_row_values_round_trip(values in vec(value(), 0..12)) {
        let mut out = Vec::new();
        encode_data_row(&mut out, values.iter().copied());
        let f = framed(&out);
        let row = DataRow::decode(f.body).expect("valid row");
        prop_assert_eq!(row.iter().collect::<Result<Vec<_>, _>>(), Ok(values));
    }

    #[test]
    fn startup_round_trip(req in startup_request()) {
        let mut out = Vec::new();
        req.encode(&mut out);
        for n in 0..out.len() {
            prop_assert_eq!(startup(&out[..n]), Ok(None), "prefix of {} bytes", n);
        }
        prop_assert_eq!(startup(&out), Ok(Some((req, out.len()))));
    }

    #[test]
    fn garbage_never_panics(buf in vec(any::<u8>(), 0..96), tag in any::<u8>(), cap in 0usize..200) {
        let _ = frame(&buf, cap);
        let _ = frame(&buf, usize::MAX);
        let _ = startup(&buf);
        let f = Frame { tag, body: &buf };
        let _ = FrontendMessage::decode(f);
        if let Ok(m) = BackendMessage::decode(f) {
            walk(&m);
        }
        if let Ok(row) = DataRow::decode(&buf) {
            prop_assert_eq!(row.iter().count(), row.len());
        }
        if let Ok(fields) = Fields::decode(&buf) {
            let _ = fields.iter().count();
        }
        let _ = password_text(&buf);
        let _ = SaslInitialResponse::decode(&buf);
        let _ = Authentication::decode(&buf);
        let _ = CopyResponse::decode(&buf);
    }

    /// Valid messages with one byte changed or the body cut short reach the deeper decode paths
    /// that random bytes rarely do.
    #[test]
    fn damaged_messages_never_panic(
        fm in frontend_message(),
        bm in backend_message(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        for m in [Err(fm), Ok(bm)] {
            let mut out = Vec::new();
            match &m {
                Err(fm) => fm.encode(&mut out),
                Ok(bm) => bm.encode(&mut out),
            }
            let body_len = out.len() - 5;
            let mut damaged = out.clone();
            if body_len > 0 {
                damaged[5 + at.index(body_len)] = byte;
            }
            let cut_body = &out[5..5 + cut.index(body_len + 1)];
            for body in [&damaged[5..], cut_body] {
                let f = Frame { tag: out[0], body };
                let _ = FrontendMessage::decode(f);
                if let Ok(m) = BackendMessage::decode(f) {
                    walk(&m);
                }
            }
        }
    }

    #[test]
    fn damaged_startup_never_panics(req in startup_request(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut out = Vec::new();
        req.encode(&mut out);
        let i = at.index(out.len());
        out[i] = byte;
        let _ = startup(&out);
    }
}
