//! Mapping candidates, confidence, precedence, rule language, rule packs, incident aggregation.
