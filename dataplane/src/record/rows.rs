//! Record stage, result rows: `StatementResult::rows_data` decoded into the text the archive
//! stores, on the recorder thread.
//!
//! `rows_data` holds PostgreSQL DataRow message bodies one after another
//! (<https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-DATAROW>):
//!
//! ```text
//! Int16 field count, then per field: Int32 length (-1 for NULL) and that many bytes
//! ```
//!
//! A value of a column in text format is stored as UTF-8 (invalid sequences replaced by
//! U+FFFD); one in binary format (`Column::binary`) as `\x` and lowercase hex, as PostgreSQL
//! prints `bytea`. Values past the described columns count as text. The decoded form is what
//! the hash chain covers, so [`Rows::encode_pg`] turns it back into DataRow bodies that decode
//! to exactly the same rows.
//!
//! Malformed input never panics: the complete rows before the fault are kept and
//! [`Rows::error`] says what was wrong.

use super::event::{Column, RowsEncoding, StatementResult};

/// Decoded text above this many bytes is not kept (the rest is flagged in `error`), so that one
/// event can never overflow a batch's string offsets.
const MAX_TEXT: usize = 256 * 1024 * 1024;

/// How [`Rows::decode_row`] takes the bytes of a text value.
#[derive(Debug, Clone, Copy)]
enum Utf8 {
    /// As they are (checked all at once afterwards).
    AsIs,
    /// Invalid sequences replaced by U+FFFD.
    Replace,
}

/// The rows of one result, flat: every value's text in one buffer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Rows {
    text: String,
    /// End offset in `text` of each value.
    value_ends: Vec<usize>,
    /// Whether each value is SQL NULL.
    value_null: Vec<bool>,
    /// End index in `value_ends` of each row.
    row_ends: Vec<usize>,
    /// Set when the input did not decode completely.
    pub(crate) error: Option<String>,
}

impl Rows {
    /// Empties the rows, keeping their allocations.
    pub(crate) fn clear(&mut self) {
        self.text.clear();
        self.value_ends.clear();
        self.value_null.clear();
        self.row_ends.clear();
        self.error = None;
    }

    /// Number of rows.
    pub(crate) fn len(&self) -> usize {
        self.row_ends.len()
    }

    /// Bytes of text held.
    pub(crate) fn text_len(&self) -> usize {
        self.text.len()
    }

    /// The values of row `i` (`None` for SQL NULL); empty past the last row.
    pub(crate) fn row(&self, i: usize) -> impl Iterator<Item = Option<&str>> + '_ {
        let end = self.row_ends.get(i).copied().unwrap_or(0);
        let start = match i.checked_sub(1) {
            Some(p) => self.row_ends.get(p).copied().unwrap_or(end),
            None => 0,
        };
        (start..end).map(move |v| self.value(v))
    }

    /// Number of values in row `i`.
    pub(crate) fn row_len(&self, i: usize) -> usize {
        let end = self.row_ends.get(i).copied().unwrap_or(0);
        let start = match i.checked_sub(1) {
            Some(p) => self.row_ends.get(p).copied().unwrap_or(end),
            None => 0,
        };
        end.saturating_sub(start)
    }

    fn value(&self, v: usize) -> Option<&str> {
        if self.value_null.get(v).copied().unwrap_or(true) {
            return None;
        }
        let end = self.value_ends.get(v).copied()?;
        let start = match v.checked_sub(1) {
            Some(p) => self.value_ends.get(p).copied()?,
            None => 0,
        };
        self.text.get(start..end)
    }

    /// The flat form, for building Arrow arrays in bulk: every value's text one after another,
    /// the end of each value in it, whether each value is NULL, and the end of each row (in
    /// values).
    pub(crate) fn parts(&self) -> (&str, &[usize], &[bool], &[usize]) {
        (
            &self.text,
            &self.value_ends,
            &self.value_null,
            &self.row_ends,
        )
    }

    /// Appends one value to the row being built.
    pub(crate) fn push_value(&mut self, value: Option<&str>) {
        if let Some(v) = value {
            self.text.push_str(v);
        }
        self.value_ends.push(self.text.len());
        self.value_null.push(value.is_none());
    }

    /// Ends the row being built.
    pub(crate) fn end_row(&mut self) {
        self.row_ends.push(self.value_ends.len());
    }

    /// Replaces the rows with those decoded from DataRow bodies.
    pub(crate) fn decode_pg(&mut self, data: &[u8], columns: &[Column]) {
        self.clear();
        let mut text = std::mem::take(&mut self.text).into_bytes();
        text.reserve(data.len());
        self.error = self.decode_all(&mut text, data, columns, Utf8::AsIs);
        // One check for every value at once: the whole text is UTF-8 and every value ends on a
        // character boundary exactly when every value is UTF-8 (checking ~10-byte values one
        // by one costs more than copying them).
        text = match String::from_utf8(text) {
            Ok(valid)
                if self
                    .value_ends
                    .iter()
                    .all(|&end| valid.is_char_boundary(end)) =>
            {
                self.text = valid;
                return;
            }
            Ok(valid) => valid.into_bytes(),
            Err(invalid) => invalid.into_bytes(),
        };
        // Some value is not UTF-8: decode again, replacing invalid sequences value by value.
        self.clear();
        text.clear();
        self.error = self.decode_all(&mut text, data, columns, Utf8::Replace);
        self.text = String::from_utf8(text)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    }

    /// Decodes every DataRow body of `data`, values into `text`; what went wrong, if anything
    /// (the complete rows before the fault are kept).
    fn decode_all(
        &mut self,
        text: &mut Vec<u8>,
        data: &[u8],
        columns: &[Column],
        utf8: Utf8,
    ) -> Option<String> {
        let mut rest = data;
        while !rest.is_empty() {
            let row = self.len();
            match self.decode_row(text, rest, columns, utf8) {
                Ok(next) => {
                    self.end_row();
                    rest = next;
                }
                Err(why) => {
                    // Drop the values of the row cut short.
                    let keep = self.row_ends.last().copied().unwrap_or(0);
                    let text_end = match keep.checked_sub(1) {
                        Some(v) => self.value_ends.get(v).copied().unwrap_or(0),
                        None => 0,
                    };
                    self.value_ends.truncate(keep);
                    self.value_null.truncate(keep);
                    text.truncate(text_end);
                    return Some(format!(
                        "row {row} (byte {}): {why}; {} rows kept",
                        data.len() - rest.len(),
                        self.len()
                    ));
                }
            }
        }
        None
    }

    /// Decodes one DataRow body from the front of `input`; returns what follows it.
    fn decode_row<'a>(
        &mut self,
        text: &mut Vec<u8>,
        input: &'a [u8],
        columns: &[Column],
        utf8: Utf8,
    ) -> Result<&'a [u8], String> {
        let (count, mut rest) = take_i16(input).ok_or("field count cut short")?;
        let count = usize::try_from(count).map_err(|_| format!("negative field count {count}"))?;
        for field in 0..count {
            let (len, after) =
                take_i32(rest).ok_or_else(|| format!("field {field}: length cut short"))?;
            rest = after;
            if len == -1 {
                self.value_ends.push(text.len());
                self.value_null.push(true);
                continue;
            }
            let len = usize::try_from(len).map_err(|_| format!("field {field}: length {len}"))?;
            let (bytes, after) = rest.split_at_checked(len).ok_or_else(|| {
                format!(
                    "field {field}: length {len} exceeds the {} bytes left",
                    rest.len()
                )
            })?;
            rest = after;
            let binary = columns.get(field).is_some_and(|c| c.binary);
            let grows = if binary { 2 + 2 * len } else { len };
            if text.len() + grows > MAX_TEXT {
                return Err(format!("decoded rows exceed {MAX_TEXT} bytes"));
            }
            if binary {
                text.extend_from_slice(b"\\x");
                push_hex(text, bytes);
            } else {
                match utf8 {
                    Utf8::AsIs => text.extend_from_slice(bytes),
                    Utf8::Replace => {
                        text.extend_from_slice(String::from_utf8_lossy(bytes).as_bytes())
                    }
                }
            }
            self.value_ends.push(text.len());
            self.value_null.push(false);
        }
        Ok(rest)
    }

    /// The rows as DataRow bodies: the inverse of [`Rows::decode_pg`] for what it produces.
    pub(crate) fn encode_pg(&self, columns: &[Column]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text.len() + 4 * self.value_ends.len());
        for r in 0..self.len() {
            let count = i16::try_from(self.row_len(r)).unwrap_or(i16::MAX);
            out.extend_from_slice(&count.to_be_bytes());
            for (field, value) in self
                .row(r)
                .take(usize::from(count.unsigned_abs()))
                .enumerate()
            {
                let Some(value) = value else {
                    out.extend_from_slice(&(-1i32).to_be_bytes());
                    continue;
                };
                let binary = columns.get(field).is_some_and(|c| c.binary);
                let bytes = match binary.then(|| unhex(value)).flatten() {
                    Some(raw) => raw,
                    // Text, or a binary value that is not `\x` and hex (an edited archive):
                    // kept as it reads, so that the edit shows as a changed hash.
                    None => value.as_bytes().to_vec(),
                };
                let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&bytes);
            }
        }
        out
    }
}

/// A result's kept rows as the archive stores them (text values as UTF-8, invalid bytes
/// replaced by U+FFFD; binary values as `\x` and hex; SQL NULL as `None`), and what was wrong
/// if `rows_data` did not decode completely (the complete rows before the fault are kept).
pub fn result_rows(r: &StatementResult) -> (Vec<Vec<Option<String>>>, Option<String>) {
    let mut rows = Rows::default();
    match r.rows_encoding {
        RowsEncoding::PgDataRow => rows.decode_pg(&r.rows_data, &r.columns),
    }
    let out = (0..rows.len())
        .map(|i| rows.row(i).map(|v| v.map(str::to_owned)).collect())
        .collect();
    (out, rows.error)
}

fn take_i16(b: &[u8]) -> Option<(i16, &[u8])> {
    let (head, rest) = b.split_first_chunk::<2>()?;
    Some((i16::from_be_bytes(*head), rest))
}

fn take_i32(b: &[u8]) -> Option<(i32, &[u8])> {
    let (head, rest) = b.split_first_chunk::<4>()?;
    Some((i32::from_be_bytes(*head), rest))
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(2 * bytes.len());
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

/// `\x` and lowercase hex back to bytes; `None` for anything else.
fn unhex(s: &str) -> Option<Vec<u8>> {
    let hex = s.strip_prefix("\\x")?.as_bytes();
    if hex.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    hex.chunks_exact(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// For tests: a DataRow body as `rows_data` holds it (the message PostgreSQL sends, without
/// its tag and length), written by the codec's own encoder.
#[cfg(test)]
pub(crate) fn data_row(values: &[Option<&[u8]>]) -> Vec<u8> {
    let mut message = Vec::new();
    crate::proto::pg::encode_data_row(&mut message, values.iter().copied());
    message.split_off(5)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(binary: bool) -> Column {
        Column {
            name: "c".into(),
            type_id: 25,
            binary,
        }
    }

    fn collect(rows: &Rows) -> Vec<Vec<Option<String>>> {
        (0..rows.len())
            .map(|r| rows.row(r).map(|v| v.map(str::to_owned)).collect())
            .collect()
    }

    #[test]
    fn text_binary_and_null_values_decode_and_encode_back() {
        let columns = [col(false), col(true), col(false)];
        let mut data = data_row(&[Some(b"42"), Some(&[0xde, 0xad, 0x00]), None]);
        data.extend(data_row(&[Some(b""), Some(b""), Some("é".as_bytes())]));
        let mut rows = Rows::default();
        rows.decode_pg(&data, &columns);
        assert_eq!(rows.error, None);
        assert_eq!(
            collect(&rows),
            vec![
                vec![Some("42".into()), Some("\\xdead00".into()), None],
                vec![Some("".into()), Some("\\x".into()), Some("é".into())],
            ]
        );
        assert_eq!(rows.encode_pg(&columns), data);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let mut rows = Rows::default();
        rows.decode_pg(&data_row(&[Some(&[b'a', 0xff])]), &[col(false)]);
        assert_eq!(collect(&rows), vec![vec![Some("a\u{fffd}".into())]]);
        // A character split between two values is valid UTF-8 once they are put together,
        // but neither value is.
        let mut data = data_row(&[Some(b"ok"), Some(&[b'a', 0xc3])]);
        data.extend(data_row(&[Some(&[0xa9, b'b']), None]));
        rows.decode_pg(&data, &[col(false), col(false)]);
        assert_eq!(rows.error, None);
        assert_eq!(
            collect(&rows),
            vec![
                vec![Some("ok".into()), Some("a\u{fffd}".into())],
                vec![Some("\u{fffd}b".into()), None],
            ]
        );
    }

    #[test]
    fn malformed_input_keeps_the_complete_rows_and_says_why() {
        let columns = [col(false)];
        let good = data_row(&[Some(b"one")]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            ([good.clone(), vec![0]].concat(), "field count cut short"),
            (
                [good.clone(), vec![0xff, 0xff]].concat(),
                "negative field count",
            ),
            (
                [good.clone(), vec![0, 1, 0, 0]].concat(),
                "length cut short",
            ),
            (
                [good.clone(), vec![0, 1, 0, 0, 0, 9, b'x']].concat(),
                "exceeds the 1 bytes left",
            ),
            (
                [good.clone(), vec![0, 2, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 9]].concat(),
                "exceeds the 0 bytes left",
            ),
            (
                [good.clone(), vec![0, 1, 0xff, 0xff, 0xff, 0xfe]].concat(),
                "length -2",
            ),
        ];
        for (data, why) in cases {
            let mut rows = Rows::default();
            rows.decode_pg(&data, &columns);
            assert_eq!(collect(&rows), vec![vec![Some("one".into())]], "{why}");
            let error = rows.error.clone().unwrap_or_default();
            assert!(error.contains(why), "{error:?} should say {why:?}");
            assert!(error.starts_with("row 1 "), "{error:?}");
        }
    }

    #[test]
    fn result_rows_are_the_stored_text_up_to_a_malformed_tail() {
        let mut data = data_row(&[Some(b"7"), None, Some(&[0xbe, 0xef])]);
        data.extend_from_slice(&[0, 1, 0, 0, 0, 9, b'x']);
        let r = StatementResult {
            statement_id: 0,
            rows: 2,
            bytes: 0,
            duration_us: 0,
            command_tag: None,
            sqlstate: None,
            error: None,
            columns: vec![col(false), col(false), col(true)].into(),
            rows_data: data,
            rows_encoding: RowsEncoding::PgDataRow,
            kept_rows: 2,
            truncated: false,
        };
        let (rows, error) = result_rows(&r);
        assert_eq!(rows, [vec![Some("7".into()), None, Some("\\xbeef".into())]]);
        assert!(error.is_some_and(|e| e.starts_with("row 1 ")));
    }

    #[test]
    fn edited_binary_values_encode_as_their_text() {
        let columns = [col(true)];
        let mut rows = Rows::default();
        rows.push_value(Some("\\xZZ"));
        rows.end_row();
        let data = rows.encode_pg(&columns);
        let mut back = Rows::default();
        back.decode_pg(&data, &columns);
        assert_eq!(collect(&back), vec![vec![Some("\\x5c785a5a".into())]]);
    }
}
