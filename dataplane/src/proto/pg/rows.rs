//! Codec stage, result rows: RowDescription ('T') and DataRow ('D') from the server.
//!
//! Formats from <https://www.postgresql.org/docs/current/protocol-message-formats.html>:
//!
//! ```text
//! 'T' RowDescription  Int16 n | field × n, each:
//!       String name | Int32 table OID (0 = computed) | Int16 column number (0 = computed)
//!       | Int32 type OID | Int16 type size (negative = variable) | Int32 type modifier
//!       | Int16 format (0 text, 1 binary)
//! 'D' DataRow         Int16 n | (Int32 len, -1 = NULL | Byte len) × n
//! ```
//!
//! The table OID and column number survive aliases, which is what the mask stage keys on.
//! DataRow is the hottest message of a result, so it stays lazy: decoding checks the column
//! lengths once without allocating, and [`DataRow::iter`] hands out slices of the frame.

use super::wire::{self, Cursor};
use super::ProtocolError;

/// One column of a RowDescription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldDescription<'a> {
    /// Column name as the client sees it (after aliases).
    pub name: &'a str,
    /// OID of the source table, or 0 for a computed column.
    pub table_oid: u32,
    /// Attribute number in the source table, or 0 for a computed column.
    pub column: i16,
    /// OID of the column's type.
    pub type_oid: u32,
    /// `pg_type.typlen`; negative for variable-width types.
    pub type_size: i16,
    /// `pg_attribute.atttypmod`; type-specific, -1 when none.
    pub type_modifier: i32,
    /// 0 text, 1 binary (always 0 in answer to Describe, before Bind chose one).
    pub format: i16,
}

/// Smallest encoded field: empty name (1 byte) and 18 bytes of numbers.
const MIN_FIELD_LEN: usize = 19;

/// Decodes the body of a RowDescription.
pub(super) fn decode_row_description(
    body: &[u8],
) -> Result<Vec<FieldDescription<'_>>, ProtocolError> {
    let mut cur = Cursor::new(body);
    let n = cur.count16(MIN_FIELD_LEN)?;
    let mut fields = Vec::with_capacity(n);
    for _ in 0..n {
        fields.push(FieldDescription {
            name: cur.cstr()?,
            table_oid: cur.u32()?,
            column: cur.i16()?,
            type_oid: cur.u32()?,
            type_size: cur.i16()?,
            type_modifier: cur.i32()?,
            format: wire::format_code(cur.i16()?)?,
        });
    }
    cur.finish()?;
    Ok(fields)
}

/// Writes the body of a RowDescription.
pub(super) fn encode_row_description_body(out: &mut Vec<u8>, fields: &[FieldDescription<'_>]) {
    wire::put_array16(out, fields, |out, f| {
        wire::put_cstr(out, f.name);
        wire::put_u32(out, f.table_oid);
        wire::put_i16(out, f.column);
        wire::put_u32(out, f.type_oid);
        wire::put_i16(out, f.type_size);
        wire::put_i32(out, f.type_modifier);
        wire::put_i16(out, f.format);
    });
}

/// A DataRow, decoded lazily: the column count and the frame body, checked once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRow<'a> {
    columns: u16,
    /// The whole body, count included.
    body: &'a [u8],
}

impl<'a> DataRow<'a> {
    /// Checks the body of a 'D' message: every column length is -1 or fits, and nothing
    /// follows the last column. Walks the lengths once; allocates nothing.
    pub fn decode(body: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut cur = Cursor::new(body);
        let columns = cur.u16()?;
        for _ in 0..columns {
            cur.value()?;
        }
        cur.finish()?;
        Ok(DataRow { columns, body })
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        usize::from(self.columns)
    }

    /// True for a row of zero columns.
    pub fn is_empty(&self) -> bool {
        self.columns == 0
    }

    /// The message body as received (count and columns), for forwarding unchanged.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.body
    }

    /// The column values in order; `None` is SQL NULL. Borrowed from the frame.
    pub fn iter(&self) -> DataRowIter<'a> {
        DataRowIter {
            cur: Cursor::new(self.body.get(2..).unwrap_or_default()),
            left: self.columns,
        }
    }
}

impl<'a> IntoIterator for &DataRow<'a> {
    type Item = Result<Option<&'a [u8]>, ProtocolError>;
    type IntoIter = DataRowIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over the columns of a [`DataRow`]. A row that came from [`DataRow::decode`] never
/// yields an error; the `Result` keeps the iterator total anyway. It stops after an error.
#[derive(Debug, Clone)]
pub struct DataRowIter<'a> {
    cur: Cursor<'a>,
    left: u16,
}

impl<'a> Iterator for DataRowIter<'a> {
    type Item = Result<Option<&'a [u8]>, ProtocolError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.left = self.left.checked_sub(1)?;
        let value = self.cur.value();
        if value.is_err() {
            self.left = 0;
        }
        Some(value)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(usize::from(self.left)))
    }
}

/// Writes a DataRow with these column values (`None` is SQL NULL); the mask stage uses it for
/// rows it rewrote. At most 65535 columns are written (PostgreSQL's limit is 1664).
pub fn encode_data_row<'v>(out: &mut Vec<u8>, columns: impl IntoIterator<Item = Option<&'v [u8]>>) {
    wire::message(out, b'D', |out| {
        let count_at = out.len();
        wire::put_i16(out, 0);
        let mut n: u16 = 0;
        for value in columns {
            let Some(next) = n.checked_add(1) else { break };
            n = next;
            wire::put_value(out, value);
        }
        if let Some(field) = out.get_mut(count_at..count_at + 2) {
            field.copy_from_slice(&n.to_be_bytes());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL 15's RowDescription for
    /// `select 1 as n, null::text as t, 'x'::text as s, 2.5::numeric`.
    const PG_ROW_DESCRIPTION: &[u8] = b"\x00\x04n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00t\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x19\xff\xff\xff\xff\xff\xff\x00\x00s\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x19\xff\xff\xff\xff\xff\xff\x00\x00numeric\x00\x00\x00\x00\x00\x00\x00\x00\x00\x06\xa4\xff\xff\xff\xff\xff\xff\x00\x00";
    /// ... and its DataRow: `1`, NULL, `x`, `2.5`.
    const PG_DATA_ROW: &[u8] =
        b"\x00\x04\x00\x00\x00\x011\xff\xff\xff\xff\x00\x00\x00\x01x\x00\x00\x00\x032.5";

    #[test]
    fn postgres_row_description() {
        let fields = decode_row_description(PG_ROW_DESCRIPTION).unwrap();
        let names: Vec<_> = fields.iter().map(|f| f.name).collect();
        assert_eq!(names, ["n", "t", "s", "numeric"]);
        assert_eq!(
            fields[0],
            FieldDescription {
                name: "n",
                table_oid: 0,
                column: 0,
                type_oid: 23,
                type_size: 4,
                type_modifier: -1,
                format: 0
            }
        );
        assert_eq!(fields[3].type_oid, 1700);
        let mut out = Vec::new();
        encode_row_description_body(&mut out, &fields);
        assert_eq!(out, PG_ROW_DESCRIPTION);
    }

    #[test]
    fn postgres_data_row() {
        let row = DataRow::decode(PG_DATA_ROW).unwrap();
        assert_eq!(row.len(), 4);
        let values: Vec<_> = row.iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(values, [Some(&b"1"[..]), None, Some(b"x"), Some(b"2.5")]);
        let mut out = Vec::new();
        encode_data_row(&mut out, values);
        assert_eq!(&out[5..], PG_DATA_ROW);
        assert_eq!(&out[..5], b"D\x00\x00\x00\x1b");
    }

    #[test]
    fn malformed_rows_are_refused() {
        let cases: &[&[u8]] = &[
            b"",
            b"\x00",
            b"\x00\x01\x00\x00\x00\x05abc", // value longer than the body
            b"\x00\x01\xff\xff\xff\xfe",    // length -2
            b"\x00\x01\x00\x00\x00\x01ab",  // trailing byte
            b"\x00\x02\xff\xff\xff\xff",    // second column missing
            b"\xff\xff\xff\xff\xff\xff",    // 65535 columns in 4 bytes
        ];
        for body in cases {
            assert!(DataRow::decode(body).is_err(), "{body:?}");
        }
        assert!(decode_row_description(b"\x00\x01n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x02").is_err(), "format 2");
        assert!(
            decode_row_description(b"\x7f\xff").is_err(),
            "count beyond the body"
        );
    }

    #[test]
    fn empty_row() {
        let row = DataRow::decode(b"\x00\x00").unwrap();
        assert!(row.is_empty());
        assert_eq!(row.iter().count(), 0);
    }
}
