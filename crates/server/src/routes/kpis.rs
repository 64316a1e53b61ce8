//! Mapping KPIs of an org (issue 7): each with its value, numerator,
//! denominator and definition (`service::KPI_DEFINITIONS`).
//!
//! The matrix query p95 is this process's own measurement: the handler
//! reads it from the Prometheus registry and hands it to the use case.

use axum::extract::State;
use serde::Deserialize;
use service::access::Action;
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

/// Query of `GET /api/v1/kpis`. An unknown parameter is refused, naming
/// it, rather than dropped: a misspelt `by` or `from` would otherwise
/// answer KPIs the client did not ask for.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KpiQuery {
    from: Option<String>,
    to: Option<String>,
    by: Option<String>,
    org: Option<String>,
}

impl KpiQuery {
    /// The org asked for, when one is named.
    fn org(&self) -> Option<&str> {
        self.org.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }
}

/// `GET /api/v1/kpis`
pub(super) async fn kpis(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    query: Result<ApiQuery<KpiQuery>, ApiError>,
) -> Result<Envelope<KpiReport>, ApiError> {
    // The use case answers another org as missing unless the role is a
    // platform role, so an org token naming another org learns nothing.
    let org = query
        .as_ref()
        .ok()
        .and_then(|ApiQuery(query)| query.org())
        .unwrap_or(&principal.org_name)
        .to_string();
    // The role before the rest of the query, against the org the use case
    // would name: a refused caller is told 403 whatever it sent.
    crate::extract::check_role(&state, &principal, Action::ReadAudit, ("kpis", &org)).await?;
    let ApiQuery(query) = query?;

    let by = query
        .by
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse::<KpiDimension>)
        .transpose()?;
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
