//! CSV quoting and redaction.
