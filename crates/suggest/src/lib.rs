//! Built-in AI-assisted technique suggester learned from an ATT&CK release.
