//! Mapping KPIs of an org (issue 7): each with its value, numerator,
//! denominator and definition (`service::KPI_DEFINITIONS`).
//!
//! The matrix query p95 is this process's own measurement: the handler
//! reads it from the Prometheus registry and hands it to the use case.

use axum::extract::State;
use serde::Deserialize;
use service::{KpiDimension, KpiReport, KpiRequest, MatrixLatency};

use super::{Param, ParamType};
use crate::AppState;
use crate::auth::Authenticated;
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::ApiQuery;

/// Parameters of `GET /api/v1/kpis`.
pub(super) const PARAMS: [Param; 4] = [
    Param::query(
        "from",
        ParamType::String,
        "First day counted (YYYY-MM-DD or RFC 3339); default: everything",
    ),
    Param::query(
        "to",
        ParamType::String,
        "First day no longer counted (YYYY-MM-DD or RFC 3339); default: open",
    ),
    Param::query(
        "by",
        ParamType::Enum(&["source", "severity", "connector"]),
        "Break the KPIs that allow it down by this dimension",
    ),
    Param::query(
        "org",
        ParamType::String,
        "Org name or id; platform roles only (others always read their own org)",
    ),
];

/// The route whose latency the `matrix_query_p95` KPI reads.
const MATRIX_ROUTE: &str = "/api/v1/matrix";

/// Query of `GET /api/v1/kpis`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct KpiQuery {
    from: Option<String>,
    to: Option<String>,
    by: Option<String>,
    org: Option<String>,
}

/// `GET /api/v1/kpis`
pub(super) async fn kpis(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiQuery(query): ApiQuery<KpiQuery>,
) -> Result<Envelope<KpiReport>, ApiError> {
    let by = query
        .by
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse::<KpiDimension>)
        .transpose()?;
    // The use case answers another org as missing unless the role is a
    // platform role, so an org token naming another org learns nothing.
    let org = query
        .org
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(&principal.org_name)
        .to_string();
    let request = KpiRequest {
        from: query.from,
        to: query.to,
        by,
    };
    let latency =
        state
            .metrics
            .quantile(MATRIX_ROUTE, "GET", 0.95)
            .map(|(p95_seconds, requests)| MatrixLatency {
                p95_seconds,
                requests,
            });

    let report = state
        .app
        .kpis(&principal.actor(), &org, &request, latency)
        .await?;

    Ok(Envelope::ok(report))
}
