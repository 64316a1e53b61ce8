//! Alert documents as SQLite stores them: compressed.
//!
//! An alert's raw document (about 2 KB of JSON) is most of its row, and a
//! bulk ingest on SQLite spends its time writing pages: each page goes into
//! the write-ahead log and again into the database file. LZ4 shrinks alert
//! JSON about threefold for a few microseconds. PostgreSQL compresses the
//! same column itself (`SET COMPRESSION lz4`), so there it stays text.
//!
//! A packed document is a BLOB: one format byte ([`LZ4_BLOCK`]), then an
//! LZ4 block with its decompressed size in front (4 bytes, little-endian).
//! Rows written before packing hold text and read as they are.

use crate::StoreError;

/// The format byte of an LZ4 block with its size in front.
const LZ4_BLOCK: u8 = 1;

/// Refuses to unpack a document claiming more than this: a damaged size
/// must not make a reader allocate gigabytes.
const MAX_UNPACKED: usize = 256 * 1024 * 1024;

/// `text` packed.
pub(crate) fn pack(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 4 + text.len() / 2);
    out.push(LZ4_BLOCK);
    out.extend_from_slice(&lz4_flex::block::compress_prepend_size(text.as_bytes()));
    out
}

/// The text of a packed document; `what` names it in errors.
pub(crate) fn unpack(bytes: &[u8], what: &str) -> Result<String, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        what: what.to_string(),
        reason,
    };
    let Some((&LZ4_BLOCK, block)) = bytes.split_first() else {
        return Err(corrupt(format!(
            "unknown packed format {:?}",
            bytes.first()
        )));
    };
    let claimed = block
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| corrupt("packed document shorter than its size".into()))?;
    if claimed > MAX_UNPACKED {
        return Err(corrupt(format!("packed document claims {claimed} bytes")));
    }
    let text = lz4_flex::block::decompress_size_prepended(block)
        .map_err(|e| corrupt(format!("packed document does not decompress: {e}")))?;
    String::from_utf8(text).map_err(|e| corrupt(format!("unpacked document is not UTF-8: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_come_back_as_they_went_in_and_smaller() {
        let doc = serde_json::json!({
            "class_uid": 2004,
            "finding_info": {"uid": "u-1", "title": "Suspicious PowerShell ü 🚀",
                             "analytic": {"uid": "a-1", "name": "PowerShell"}},
            "message": "powershell -enc ".repeat(40),
        })
        .to_string();
        let packed = pack(&doc);
        assert_eq!(packed[0], LZ4_BLOCK);
        assert!(
            packed.len() < doc.len() / 2,
            "{} of {}",
            packed.len(),
            doc.len()
        );
        assert_eq!(unpack(&packed, "alert").unwrap(), doc);
        assert_eq!(unpack(&pack(""), "alert").unwrap(), "");
    }

    #[test]
    fn damaged_documents_are_refused_with_the_reason() {
        let packed = pack("{\"a\": 1}");
        let reason = |bytes: &[u8]| match unpack(bytes, "alert a-1") {
            Err(StoreError::Corrupt { what, reason }) => {
                assert_eq!(what, "alert a-1");
                reason
            }
            other => panic!("expected a corrupt document, got {other:?}"),
        };
        assert!(reason(&[]).contains("unknown packed format None"));
        assert!(reason(&[7, 1, 2]).contains("unknown packed format Some(7)"));
        assert!(reason(&packed[..3]).contains("shorter than its size"));
        let mut huge = packed.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(reason(&huge).contains("claims 4294967295 bytes"));
        let mut truncated = packed.clone();
        truncated.truncate(packed.len() - 2);
        assert!(reason(&truncated).contains("does not decompress"));
    }
}
