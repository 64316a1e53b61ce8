//! The route table: every API route with its documentation and policy facts.
//!
//! [`crate::router`] mounts exactly these routes and [`crate::openapi`]
//! documents exactly these routes; the tenant-leakage and role-matrix test
//! suites iterate [`route_table`]. Adding a route means adding one entry
//! here, with its handler, so nothing can be served undocumented or
//! untested.

mod alerts;
mod audit;
mod datasets;
mod exports;
mod incidents;
mod kpis;
mod matrix;
mod notifications;
mod ops;
mod review;
mod rules;
mod suggest;
mod taxonomy;

use axum::handler::Handler;
use axum::routing::{MethodRouter, get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use service::PageRequest;
use service::access::Action;

use crate::AppState;
use crate::envelope::Envelope;
use crate::error::ApiError;

/// The HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HttpMethod {
    /// `GET`: reads, never changes anything.
    Get,
    /// `POST`: lifecycle actions and uploads.
    Post,
}

impl HttpMethod {
    /// Upper-case name (`GET`).
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
        }
    }

    /// Lower-case name, as OpenAPI path items spell it.
    pub fn as_lower(self) -> &'static str {
        match self {
            HttpMethod::Get => "get",
            HttpMethod::Post => "post",
        }
    }
}

/// How a route relates to tenants; the tenant-leakage suite reads this to
/// decide what a token of another org must see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tenancy {
    /// No token needed and no tenant data (health, metrics, the document).
    Public,
    /// Global reference data, identical for every org (ATT&CK taxonomy and
    /// datasets); lifecycle changes are platform roles' business.
    Shared,
    /// Data owned by the caller's org (audit rows); another org's rows must
    /// look exactly like missing ones.
    Org,
    /// No token: one org's data behind a signed, expiring URL (export
    /// downloads). The signature binds the org, so the leakage suite checks
    /// that a URL re-aimed at another org is refused, not that two tokens
    /// see alike.
    Signed,
}

impl Tenancy {
    /// Name used in the OpenAPI `x-tenancy` extension.
    pub fn as_str(self) -> &'static str {
        match self {
            Tenancy::Public => "public",
            Tenancy::Shared => "shared",
            Tenancy::Org => "org",
            Tenancy::Signed => "signed",
        }
    }
}

/// Where a parameter is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// A `{name}` segment of the path.
    Path,
    /// A `?name=` query parameter.
    Query,
}

/// The type of a parameter, for the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// Free text.
    String,
    /// An integer within bounds.
    Integer {
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value.
        max: i64,
    },
    /// `true` or `false`.
    Boolean,
    /// One of a fixed list of strings.
    Enum(&'static [&'static str]),
}

/// One documented parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    /// Name as it appears in the path or query.
    pub name: &'static str,
    /// Path or query.
    pub location: Location,
    /// Whether the client must give it (path parameters always are).
    pub required: bool,
    /// Type and bounds.
    pub kind: ParamType,
    /// What it means.
    pub description: &'static str,
}

impl Param {
    /// A path parameter.
    pub const fn path(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            location: Location::Path,
            required: true,
            kind: ParamType::String,
            description,
        }
    }

    /// An optional query parameter.
    pub const fn query(name: &'static str, kind: ParamType, description: &'static str) -> Self {
        Self {
            name,
            location: Location::Query,
            required: false,
            kind,
            description,
        }
    }

    /// Marks a query parameter as required.
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }
}

/// What a route reads as its body.
#[derive(Debug, Clone, Copy)]
pub enum Body {
    /// No body.
    None,
    /// A JSON object.
    Json {
        /// Its JSON Schema.
        schema: fn() -> Value,
        /// A valid example, shown in the document and sent by the generated
        /// role and tenancy tests.
        example: fn() -> Value,
    },
    /// An ATT&CK bundle, plain or gzipped, subject to the upload limit.
    Bundle,
    /// Newline-delimited JSON documents, subject to the bulk limit.
    Ndjson {
        /// A valid example, shown in the document and sent by the generated
        /// role and tenancy tests.
        example: fn() -> String,
    },
}

/// Everything known about one route except its handler.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// HTTP method.
    pub method: HttpMethod,
    /// Path template in axum and OpenAPI syntax (`/api/v1/datasets/{id}`).
    pub path: &'static str,
    /// OpenAPI `operationId`.
    pub operation_id: &'static str,
    /// One line for the document.
    pub summary: &'static str,
    /// Group in the document.
    pub tag: &'static str,
    /// Whether a bearer token is required.
    pub auth: bool,
    /// The permission the service checks, from `service::access`; `None`
    /// for routes any authenticated token (or anyone) may call.
    pub action: Option<Action>,
    /// Relation to tenants.
    pub tenancy: Tenancy,
    /// Path and query parameters.
    pub params: Vec<Param>,
    /// Request body.
    pub body: Body,
    /// Content type of a success.
    pub produces: &'static str,
    /// Whether success is `201 Created` rather than `200 OK`.
    pub created: bool,
    /// Whether the work may go on after the answer (`202 Accepted` besides
    /// the usual success).
    pub may_continue: bool,
    /// Whether the answer is a page with `meta.next_cursor`.
    pub paginated: bool,
}

impl RouteSpec {
    /// The error statuses this route can answer, for the document.
    pub fn errors(&self) -> Vec<u16> {
        let has_body = !matches!(self.body, Body::None);
        let mut statuses = Vec::new();
        if !self.params.is_empty() || has_body {
            statuses.push(400);
        }
        if self.auth {
            statuses.push(401);
        }
        // A signed route refuses an expired or altered URL with 403.
        if self.action.is_some() || self.tenancy == Tenancy::Signed {
            statuses.push(403);
        }
        // Path ids may not exist; and every use case behind a permission
        // reads stored state that may be missing (ids in a query or body,
        // the active dataset of a domain, the dataset to roll back to).
        if self.action.is_some() || self.params.iter().any(|p| p.location == Location::Path) {
            statuses.push(404);
        }
        if self.method == HttpMethod::Post {
            statuses.push(409);
        }
        if has_body {
            statuses.push(413);
        }
        if matches!(self.body, Body::Json { .. } | Body::Ndjson { .. }) {
            statuses.push(415);
        }
        if self.method == HttpMethod::Post {
            statuses.push(422);
        }
        if self.auth {
            statuses.push(429);
        }
        statuses.extend([500, 503]);
        statuses
    }
}

/// A route: its spec and the handler that serves it.
pub struct Route {
    /// Documentation and policy facts.
    pub spec: RouteSpec,
    /// The handler, already bound to the spec's method.
    pub handler: MethodRouter<AppState>,
}

impl Route {
    fn new(method: HttpMethod, path: &'static str, handler: MethodRouter<AppState>) -> Self {
        Self {
            spec: RouteSpec {
                method,
                path,
                operation_id: "",
                summary: "",
                tag: "",
                auth: true,
                action: None,
                tenancy: Tenancy::Shared,
                params: Vec::new(),
                body: Body::None,
                produces: "application/json",
                created: false,
                may_continue: false,
                paginated: false,
            },
            handler,
        }
    }

    fn get<H, T>(path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        Self::new(HttpMethod::Get, path, get(handler))
    }

    fn post<H, T>(path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        Self::new(HttpMethod::Post, path, post(handler))
    }

    fn doc(mut self, operation_id: &'static str, tag: &'static str, summary: &'static str) -> Self {
        self.spec.operation_id = operation_id;
        self.spec.tag = tag;
        self.spec.summary = summary;
        self
    }

    fn public(mut self) -> Self {
        self.spec.auth = false;
        self.spec.tenancy = Tenancy::Public;
        self
    }

    fn signed(mut self) -> Self {
        self.spec.auth = false;
        self.spec.tenancy = Tenancy::Signed;
        self
    }

    fn action(mut self, action: Action) -> Self {
        self.spec.action = Some(action);
        self
    }

    fn tenancy(mut self, tenancy: Tenancy) -> Self {
        self.spec.tenancy = tenancy;
        self
    }

    fn params(mut self, params: &[Param]) -> Self {
        self.spec.params.extend_from_slice(params);
        self
    }

    fn paginated(mut self) -> Self {
        self.spec.paginated = true;
        self.spec.params.extend_from_slice(&PAGE_PARAMS);
        self
    }

    fn body(mut self, body: Body) -> Self {
        self.spec.body = body;
        self
    }

    fn created(mut self) -> Self {
        self.spec.created = true;
        self
    }

    fn may_continue(mut self) -> Self {
        self.spec.may_continue = true;
        self
    }

    fn produces(mut self, content_type: &'static str) -> Self {
        self.spec.produces = content_type;
        self
    }
}

/// Default page size when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page size a client may ask for.
pub const MAX_LIMIT: u32 = 500;

const PAGE_PARAMS: [Param; 2] = [
    Param::query(
        "cursor",
        ParamType::String,
        "Opaque cursor from `meta.next_cursor` of the previous page",
    ),
    Param::query(
        "limit",
        ParamType::Integer {
            min: 1,
            max: MAX_LIMIT as i64,
        },
        "Page size (default 50)",
    ),
];

const DOMAIN: Param = Param::path(
    "domain",
    "ATT&CK domain: enterprise-attack, mobile-attack or ics-attack",
);
const DATASET_ID: Param = Param::path("id", "Dataset id");
const INCIDENT_ID: Param = Param::path("id", "Incident id");
const ALERT_ID: Param = Param::path("id", "Alert id, or the alert's own id in its source");
const OVERRIDE_ID: Param = Param::path("id", "Override id");
const REVIEW_ID: Param = Param::path("id", "Review item id");

/// Every route of the API, in document order.
pub fn routes() -> Vec<Route> {
    vec![
        // Operations: no token, no tenant data.
        Route::get("/healthz", ops::healthz)
            .doc("healthz", "operations", "Liveness: the process answers")
            .public()
            .produces("text/plain"),
        Route::get("/readyz", ops::readyz)
            .doc(
                "readyz",
                "operations",
                "Readiness: database reachable and every required domain has an active dataset",
            )
            .public(),
        Route::get("/metrics", ops::metrics)
            .doc(
                "metrics",
                "operations",
                "Prometheus metrics (text format 0.0.4)",
            )
            .public()
            .produces("text/plain"),
        Route::get("/api/v1/openapi.json", ops::openapi)
            .doc("openapi", "operations", "This OpenAPI 3.1 document")
            .public(),
        // Taxonomy reads against the active dataset of a domain.
        Route::get("/api/v1/taxonomy/{domain}/tactics", taxonomy::tactics)
            .doc(
                "listTactics",
                "taxonomy",
                "Tactics of the active dataset, in matrix order",
            )
            .action(Action::ReadTaxonomy)
            .params(&[DOMAIN]),
        Route::get("/api/v1/taxonomy/{domain}/techniques", taxonomy::techniques)
            .doc(
                "listTechniques",
                "taxonomy",
                "Techniques of the active dataset, filtered and paginated",
            )
            .action(Action::ReadTaxonomy)
            .params(&[DOMAIN])
            .params(&taxonomy::TECHNIQUE_FILTERS)
            .paginated(),
        Route::get(
            "/api/v1/taxonomy/{domain}/techniques/{id}",
            taxonomy::technique,
        )
        .doc(
            "getTechnique",
            "taxonomy",
            "One technique with its sub-techniques and its replacement if revoked",
        )
        .action(Action::ReadTaxonomy)
        .params(&[
            DOMAIN,
            Param::path("id", "ATT&CK technique ID (T1574, T1574.001)"),
        ]),
        // The dataset lifecycle.
        Route::get("/api/v1/datasets", datasets::list)
            .doc("listDatasets", "datasets", "Loaded datasets, newest first")
            .action(Action::ReadDatasets)
            .params(&datasets::LIST_FILTERS)
            .paginated(),
        Route::post("/api/v1/datasets", datasets::load)
            .doc(
                "loadDataset",
                "datasets",
                "Load an ATT&CK release from the request body as a new dataset",
            )
            .action(Action::DatasetLoad)
            .params(&datasets::LOAD_PARAMS)
            .body(Body::Bundle)
            .created(),
        Route::get("/api/v1/datasets/diff", datasets::diff)
            .doc(
                "diffDatasets",
                "datasets",
                "Changes between two datasets (JSON, or Markdown with format=markdown)",
            )
            .action(Action::ReadDatasets)
            .params(&datasets::DIFF_PARAMS),
        Route::post("/api/v1/datasets/rollback", datasets::rollback)
            .doc(
                "rollbackDomain",
                "datasets",
                "Reactivate the previous dataset of a domain",
            )
            .action(Action::DatasetRollback)
            .body(Body::Json {
                schema: datasets::rollback_schema,
                example: datasets::rollback_example,
            }),
        Route::get("/api/v1/datasets/{id}", datasets::show)
            .doc(
                "getDataset",
                "datasets",
                "One dataset and its lifecycle record",
            )
            .action(Action::ReadDatasets)
            .params(&[DATASET_ID]),
        Route::get("/api/v1/datasets/{id}/validation", datasets::validation)
            .doc(
                "getDatasetValidation",
                "datasets",
                "The Gate A validation report of a dataset",
            )
            .action(Action::ReadDatasets)
            .params(&[DATASET_ID]),
        Route::post("/api/v1/datasets/{id}/validate", datasets::validate)
            .doc("validateDataset", "datasets", "Run Gate A validation")
            .action(Action::DatasetValidate)
            .params(&[DATASET_ID]),
        Route::post("/api/v1/datasets/{id}/approve", datasets::approve)
            .doc(
                "approveDataset",
                "datasets",
                "Approve a validated dataset (not by the steward who loaded it)",
            )
            .action(Action::DatasetApprove)
            .params(&[DATASET_ID]),
        Route::post("/api/v1/datasets/{id}/reject", datasets::reject)
            .doc("rejectDataset", "datasets", "Reject a dataset")
            .action(Action::DatasetReject)
            .params(&[DATASET_ID])
            .body(Body::Json {
                schema: datasets::reject_schema,
                example: datasets::reject_example,
            }),
        Route::post("/api/v1/datasets/{id}/activate", datasets::activate)
            .doc(
                "activateDataset",
                "datasets",
                "Activate an approved dataset; answers the compatibility report",
            )
            .action(Action::DatasetActivate)
            .params(&[DATASET_ID]),
        // AI-assisted suggestions from the active dataset's suggester.
        Route::post("/api/v1/suggest", suggest::suggest)
            .doc(
                "suggestTechniques",
                "suggestions",
                "Ranked technique suggestions with evidence for text or alert fields",
            )
            .action(Action::Suggest)
            .body(Body::Json {
                schema: suggest::suggest_schema,
                example: suggest::suggest_example,
            }),
        Route::post("/api/v1/suggest/batch", suggest::batch)
            .doc(
                "suggestTechniquesBatch",
                "suggestions",
                "Suggestions for up to 100 inputs, in order (built-in suggester only)",
            )
            .action(Action::Suggest)
            .body(Body::Json {
                schema: suggest::batch_schema,
                example: suggest::batch_example,
            }),
        Route::get("/api/v1/alerts/{id}/suggestions", suggest::alert)
            .doc(
                "suggestAlertTechniques",
                "suggestions",
                "Ranked technique suggestions for a stored alert (nothing is stored)",
            )
            .action(Action::Suggest)
            .tenancy(Tenancy::Org)
            .params(&[ALERT_ID])
            .params(&suggest::SUBJECT_PARAMS),
        Route::get("/api/v1/incidents/{id}/suggestions", suggest::incident)
            .doc(
                "suggestIncidentTechniques",
                "suggestions",
                "Ranked technique suggestions for a stored incident from its alerts and evidence",
            )
            .action(Action::Suggest)
            .tenancy(Tenancy::Org)
            .params(&[INCIDENT_ID])
            .params(&suggest::SUBJECT_PARAMS),
        // Incidents and their ATT&CK profiles, in the caller's org.
        Route::get("/api/v1/incidents", incidents::list)
            .doc(
                "listIncidents",
                "incidents",
                "The org's incidents (title, status, severity, alert count), most recently updated first",
            )
            .action(Action::ReadMappings)
            .tenancy(Tenancy::Org)
            .paginated(),
        Route::post("/api/v1/incidents", incidents::create)
            .doc(
                "createIncident",
                "incidents",
                "Create an incident, optionally with alerts; answers it with its profile",
            )
            .action(Action::IncidentWrite)
            .tenancy(Tenancy::Org)
            .body(Body::Json {
                schema: incidents::create_schema,
                example: incidents::create_example,
            })
            .created(),
        Route::get("/api/v1/incidents/{id}", incidents::show)
            .doc(
                "getIncident",
                "incidents",
                "An incident with its ATT&CK profile, lineage, adjustments and evidence",
            )
            .action(Action::ReadMappings)
            .tenancy(Tenancy::Org)
            .params(&[INCIDENT_ID]),
        Route::post("/api/v1/incidents/{id}/attach", incidents::attach)
            .doc("attachIncidentAlerts", "incidents", "Attach alerts (ids or source uids)")
            .action(Action::IncidentWrite)
            .tenancy(Tenancy::Org)
            .params(&[INCIDENT_ID])
            .body(Body::Json {
                schema: incidents::alerts_schema,
                example: incidents::alerts_example,
            }),
        Route::post("/api/v1/incidents/{id}/detach", incidents::detach)
            .doc("detachIncidentAlerts", "incidents", "Detach alerts; the attachment stays as history")
            .action(Action::IncidentWrite)
            .tenancy(Tenancy::Org)
            .params(&[INCIDENT_ID])
            .body(Body::Json {
                schema: incidents::alerts_schema,
                example: incidents::alerts_example,
            }),
        Route::post("/api/v1/incidents/{id}/merge", incidents::merge)
            .doc("mergeIncidents", "incidents", "Merge another incident into this one (this one survives)")
            .action(Action::IncidentWrite)
            .tenancy(Tenancy::Org)
            .params(&[INCIDENT_ID])
            .body(Body::Json {
                schema: incidents::merge_schema,
                example: incidents::merge_example,
            }),
        Route::post("/api/v1/incidents/{id}/split", incidents::split)
            .doc("splitIncident", "incidents", "Move alerts into a new incident; answers the new one")
            .action(Action::IncidentWrite)
            .tenancy(Tenancy::Org)
            .params(&[INCIDENT_ID])
            .body(Body::Json {
                schema: incidents::alerts_schema,
                example: incidents::alerts_example,
            })
            .created(),
        Route::post("/api/v1/incidents/{id}/adjustments", incidents::adjust)
            .doc(
                "adjustIncident",
                "incidents",
                "A lead adjustment of the incident's mapping (rationale and evidence required)",
            )
            .action(Action::IncidentAdjust)
            .tenancy(Tenancy::Org)
            .params(&[INCIDENT_ID])
            .body(Body::Json {
                schema: incidents::adjust_schema,
                example: incidents::adjust_example,
            }),
        Route::post("/api/v1/incidents/{id}/status", incidents::status)
            .doc("setIncidentStatus", "incidents", "Change the status (reopening marks the profile stale)")
            .action(Action::IncidentWrite)
            .tenancy(Tenancy::Org)
            .params(&[INCIDENT_ID])
            .body(Body::Json {
                schema: incidents::status_schema,
                example: incidents::status_example,
            }),
        Route::post("/api/v1/incidents/{id}/severity", incidents::severity)
            .doc("setIncidentSeverity", "incidents", "Change the severity (marks the profile stale)")
            .action(Action::IncidentWrite)
            .tenancy(Tenancy::Org)
            .params(&[INCIDENT_ID])
            .body(Body::Json {
                schema: incidents::severity_schema,
                example: incidents::severity_example,
            }),
        Route::post("/api/v1/incidents/{id}/evidence", incidents::evidence)
            .doc("addIncidentEvidence", "incidents", "Add an evidence reference (marks the profile stale)")
            .action(Action::IncidentWrite)
            .tenancy(Tenancy::Org)
            .params(&[INCIDENT_ID])
            .body(Body::Json {
                schema: incidents::evidence_schema,
                example: incidents::evidence_example,
            }),
        // Alerts, their mappings and overrides, in the caller's org.
        Route::post("/api/v1/alerts", alerts::ingest)
            .doc(
                "ingestAlert",
                "alerts",
                "Ingest one alert (OCSF 2004, ECS or native) and answer its mapping \
                 (200 when already stored)",
            )
            .action(Action::AlertIngest)
            .tenancy(Tenancy::Org)
            .body(Body::Json {
                schema: alerts::alert_schema,
                example: alerts::alert_example,
            })
            .created(),
        Route::post("/api/v1/alerts/bulk", alerts::bulk)
            .doc(
                "ingestAlertsBulk",
                "alerts",
                "Ingest NDJSON alerts, one per line; good lines are stored even when others \
                 are rejected, and the summary names each rejected line with its reason",
            )
            .action(Action::AlertIngest)
            .tenancy(Tenancy::Org)
            .body(Body::Ndjson {
                example: alerts::bulk_example,
            }),
        Route::get("/api/v1/alerts", alerts::list)
            .doc(
                "listAlerts",
                "alerts",
                "Alerts of the org, newest first, with their current canonical mapping",
            )
            .action(Action::ReadMappings)
            .tenancy(Tenancy::Org)
            .params(&alerts::LIST_FILTERS)
            .paginated(),
        Route::get("/api/v1/alerts/{id}", alerts::show)
            .doc(
                "getAlert",
                "alerts",
                "One alert's mapping: every candidate with provenance, the canonical set and \
                 why precedence chose it, overrides and history",
            )
            .action(Action::ReadMappings)
            .tenancy(Tenancy::Org)
            .params(&[ALERT_ID]),
        Route::post("/api/v1/alerts/{id}/overrides", alerts::create_override)
            .doc(
                "createOverride",
                "alerts",
                "Override an alert's mapping (reason code required): applied for a lead, \
                 proposed otherwise",
            )
            .action(Action::OverrideCreate)
            .tenancy(Tenancy::Org)
            .params(&[ALERT_ID])
            .body(Body::Json {
                schema: alerts::override_schema,
                example: alerts::override_example,
            })
            .created(),
        Route::post("/api/v1/overrides/{id}/decide", alerts::decide_override)
            .doc(
                "decideOverride",
                "alerts",
                "Approve or reject a proposed override",
            )
            .action(Action::OverrideApprove)
            .tenancy(Tenancy::Org)
            .params(&[OVERRIDE_ID])
            .body(Body::Json {
                schema: alerts::decide_schema,
                example: alerts::decide_example,
            }),
        Route::post("/api/v1/remap", alerts::remap)
            .doc(
                "remapAlerts",
                "alerts",
                "Re-map every alert of the org under the active release and the org's rules \
                 (200 when finished within 30 s, else 202 while it runs on)",
            )
            .action(Action::RuleWrite)
            .tenancy(Tenancy::Org)
            .may_continue(),
        Route::get("/api/v1/remap", alerts::remap_run)
            .doc(
                "getRemapRun",
                "alerts",
                "The org's latest re-map run: state, alerts re-evaluated and changed so far",
            )
            .action(Action::ReadMappings)
            .tenancy(Tenancy::Org),
        // The review queue of the caller's org.
        Route::get("/api/v1/review", review::list)
            .doc(
                "listReview",
                "review",
                "Review items of the org, oldest first",
            )
            .action(Action::ReadMappings)
            .tenancy(Tenancy::Org)
            .params(&review::LIST_FILTERS)
            .paginated(),
        Route::post("/api/v1/review/{id}/decide", review::decide)
            .doc(
                "decideReview",
                "review",
                "Accept or reject an open item's mapping",
            )
            .action(Action::ReviewWork)
            .tenancy(Tenancy::Org)
            .params(&[REVIEW_ID])
            .body(Body::Json {
                schema: review::decide_schema,
                example: review::decide_example,
            }),
        Route::post("/api/v1/review/{id}/correct", review::correct)
            .doc(
                "correctReview",
                "review",
                "Correct an open item's mapping with an override and resolve it",
            )
            .action(Action::ReviewWork)
            .tenancy(Tenancy::Org)
            .params(&[REVIEW_ID])
            .body(Body::Json {
                schema: alerts::override_schema,
                example: alerts::override_example,
            }),
        // Mapping rules and Sigma rule packs of the caller's org.
        Route::get("/api/v1/rules", rules::list)
            .doc(
                "listRules",
                "rules",
                "Rule versions of the org, ordered by rule id then version",
            )
            .action(Action::ReadMappings)
            .tenancy(Tenancy::Org)
            .params(&rules::LIST_FILTERS)
            .paginated(),
        Route::post("/api/v1/rules", rules::save)
            .doc(
                "saveRule",
                "rules",
                "Create a mapping rule, or with update a new version; a rule that does not parse answers 422 and nothing changes",
            )
            .action(Action::RuleWrite)
            .tenancy(Tenancy::Org)
            .body(Body::Json {
                schema: rules::rule_schema,
                example: rules::rule_example,
            })
            .created(),
        Route::post("/api/v1/rules/simulate", rules::simulate)
            .doc(
                "simulateRule",
                "rules",
                "The alerts whose canonical mapping a new or changed rule would change; changes nothing",
            )
            .action(Action::ReadMappings)
            .tenancy(Tenancy::Org)
            .body(Body::Json {
                schema: rules::rule_schema,
                example: rules::rule_example,
            }),
        Route::post("/api/v1/rules/sigma", rules::import_sigma)
            .doc(
                "importSigmaPack",
                "rules",
                "Import a .tar.gz of Sigma rules as mapping rules; answers imported, skipped with reasons and tags the active release does not accept",
            )
            .action(Action::RuleWrite)
            .tenancy(Tenancy::Org)
            .params(&rules::SIGMA_PARAMS)
            .body(Body::Bundle)
            .created(),
        Route::get("/api/v1/rules/imports/{id}", rules::import_report)
            .doc(
                "getRulePackImport",
                "rules",
                "The stored report of a rule pack import",
            )
            .action(Action::ReadMappings)
            .tenancy(Tenancy::Org)
            .params(&[Param::path("id", "Rule pack import id")]),
        Route::post("/api/v1/rules/{id}/rollback", rules::rollback)
            .doc(
                "rollbackRule",
                "rules",
                "Make the previous version of a rule active again",
            )
            .action(Action::RuleWrite)
            .tenancy(Tenancy::Org)
            .params(&[Param::path("id", "Rule id")]),
        // The ATT&CK matrix of the caller's org, from rollups.
        Route::get("/api/v1/matrix", matrix::matrix)
            .doc(
                "getMatrix",
                "matrix",
                "The org's matrix: cells with count, intensity and confidence, per-technique totals, the formula",
            )
            .action(Action::ReadMappings)
            .tenancy(Tenancy::Org)
            .params(&matrix::FILTERS),
        Route::get("/api/v1/matrix/drilldown", matrix::drilldown)
            .doc(
                "getMatrixDrilldown",
                "matrix",
                "The alerts behind one cell with each mapping's source, confidence, evidence and override history, their open review items, and the incidents holding them",
            )
            .action(Action::ReadMappings)
            .tenancy(Tenancy::Org)
            .params(&matrix::FILTERS)
            .params(&matrix::DRILLDOWN),
        Route::get("/api/v1/matrix/export", matrix::export)
            .doc(
                "exportMatrix",
                "matrix",
                "The view as a Navigator layer 4.5 or CSV file (audited)",
            )
            .action(Action::MatrixExport)
            .tenancy(Tenancy::Org)
            .params(&matrix::FILTERS)
            .params(&matrix::EXPORT)
            .produces("application/octet-stream"),
        Route::post("/api/v1/matrix/import", matrix::import)
            .doc(
                "importMatrixLayer",
                "matrix",
                "Compare a Navigator layer with the org's activity",
            )
            .action(Action::ReadMappings)
            .tenancy(Tenancy::Org)
            .params(&matrix::FILTERS)
            .body(Body::Json {
                schema: matrix::import_schema,
                example: matrix::import_example,
            }),
        // Signed export URLs: signing needs the export permission, the
        // download only the URL.
        Route::post("/api/v1/exports", exports::sign)
            .doc(
                "signExport",
                "exports",
                "A short-lived signed download URL for a Navigator layer, matrix CSV or \
                 drilldown CSV of the org (audited)",
            )
            .action(Action::MatrixExport)
            .tenancy(Tenancy::Org)
            .body(Body::Json {
                schema: exports::sign_schema,
                example: exports::sign_example,
            }),
        Route::get("/api/v1/exports/download", exports::download)
            .doc(
                "downloadExport",
                "exports",
                "The file a signed URL names; no token, refused with 403 when expired or altered \
                 (audited)",
            )
            .signed()
            .params(&exports::DOWNLOAD_PARAMS)
            .produces("application/octet-stream"),
        // KPIs of the org.
        Route::get("/api/v1/kpis", kpis::kpis)
            .doc(
                "getKpis",
                "kpis",
                "Mapping KPIs of the org with numerator, denominator and definition, optionally \
                 broken down by source, severity or connector",
            )
            .action(Action::ReadAudit)
            .tenancy(Tenancy::Org)
            .params(&kpis::PARAMS),
        // Audit.
        Route::get("/api/v1/audit", audit::list)
            .doc(
                "listAudit",
                "audit",
                "Audit events of the caller's org (platform roles also see platform events)",
            )
            .action(Action::ReadAudit)
            .tenancy(Tenancy::Org)
            .paginated(),
        // Notifications for the caller's role (misuse signals, arbitration
        // locks; a broken audit chain for platform admins).
        Route::get("/api/v1/notifications", notifications::list)
            .doc(
                "listNotifications",
                "notifications",
                "Notifications for the caller's role, newest first (platform admins also see platform ones)",
            )
            .action(Action::ReadNotifications)
            .tenancy(Tenancy::Org)
            .paginated(),
        Route::post("/api/v1/notifications/{id}/ack", notifications::acknowledge)
            .doc(
                "acknowledgeNotification",
                "notifications",
                "Mark a notification as read (audited)",
            )
            .action(Action::ReadNotifications)
            .tenancy(Tenancy::Org)
            .params(&[Param::path("id", "Notification id")]),
    ]
}

/// The specs of every route, without handlers: what the document and the
/// generated test suites iterate.
pub fn route_table() -> Vec<RouteSpec> {
    routes().into_iter().map(|r| r.spec).collect()
}

/// JSON Schema of an object with one required string property and no
/// other (the bodies using it refuse unknown fields).
fn one_string_schema(name: &str, description: &str) -> Value {
    json!({
        "type": "object",
        "required": [name],
        "additionalProperties": false,
        "properties": { name: { "type": "string", "description": description } }
    })
}

/// Parses the `limit` query parameter: 1 to [`MAX_LIMIT`], default
/// [`DEFAULT_LIMIT`]. Out-of-range values are refused rather than clamped
/// so a client learns the bound instead of silently getting fewer items.
fn parse_limit(limit: Option<&str>) -> Result<usize, ApiError> {
    let Some(raw) = limit else {
        return Ok(DEFAULT_LIMIT as usize);
    };
    match raw.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n as usize),
        _ => Err(ApiError::invalid_field(
            "limit",
            format!("limit must be an integer from 1 to {MAX_LIMIT}, got `{raw}`"),
        )),
    }
}

/// Parses a boolean query parameter (`true`/`false`, `1`/`0`).
fn parse_bool(field: &str, raw: Option<&str>, default: bool) -> Result<bool, ApiError> {
    match raw.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes") => Ok(true),
        Some("false" | "0" | "no") => Ok(false),
        Some(other) => Err(ApiError::invalid_field(
            field,
            format!("{field} must be true or false, got `{other}`"),
        )),
    }
}

/// Parses an ATT&CK domain from a path or query parameter.
fn parse_domain(field: &str, raw: &str) -> Result<::taxonomy::Domain, ApiError> {
    raw.parse::<::taxonomy::Domain>()
        .map_err(|e| ApiError::invalid_field(field, e.to_string()))
}

/// A page request from the `cursor` and `limit` query parameters.
fn page_request(cursor: Option<String>, limit: Option<&str>) -> Result<PageRequest, ApiError> {
    Ok(PageRequest {
        cursor: cursor
            .filter(|c| !c.is_empty())
            .map(|c| decode_cursor(&c))
            .transpose()?,
        limit: Some(parse_limit(limit)?),
    })
}

/// A page of items in the envelope, with the use case's cursor made opaque.
fn page_envelope<T: serde::Serialize>(
    items: Vec<T>,
    next_cursor: Option<String>,
    limit: usize,
) -> Envelope<Vec<T>> {
    Envelope::page(items, next_cursor.as_deref().map(encode_cursor)).with_meta("limit", limit)
}

/// Every cursor the API hands out is the base64url form of the use case's
/// own cursor: one opaque format for every list, whatever each use case
/// keys its pages on, and no client comes to depend on the inner shape.
fn encode_cursor(inner: &str) -> String {
    URL_SAFE_NO_PAD.encode(inner)
}

/// The use case's cursor inside an API cursor.
fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(invalid_cursor)
}

/// 400 for a cursor this API did not issue.
fn invalid_cursor() -> ApiError {
    ApiError::invalid_field(
        "cursor",
        "the cursor is not one this API issued; start again without a cursor",
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn limit_bounds() {
        assert_eq!(parse_limit(None).unwrap(), 50);
        assert_eq!(parse_limit(Some("500")).unwrap(), 500);
        assert_eq!(parse_limit(Some("1")).unwrap(), 1);
        for bad in ["0", "501", "-1", "ten", ""] {
            let error = parse_limit(Some(bad)).unwrap_err();
            assert_eq!(error.code, "invalid_input", "{bad}");
            assert_eq!(error.details, Some(json!({ "field": "limit" })));
        }
    }

    #[test]
    fn every_path_parameter_is_documented_and_routes_are_unique() {
        let table = route_table();
        let mut seen = BTreeSet::new();
        for route in &table {
            assert!(
                seen.insert((route.path, route.method)),
                "{} {} listed twice",
                route.method.as_str(),
                route.path
            );
            assert!(
                !route.operation_id.is_empty(),
                "{} has no operationId",
                route.path
            );
            let in_path: BTreeSet<&str> = route
                .path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            let documented: BTreeSet<&str> = route
                .params
                .iter()
                .filter(|p| p.location == Location::Path)
                .map(|p| p.name)
                .collect();
            assert_eq!(in_path, documented, "{}", route.path);
            assert_eq!(
                route.auth,
                !matches!(route.tenancy, Tenancy::Public | Tenancy::Signed),
                "{}: public and signed routes need no token, others do",
                route.path
            );
        }
        let ids: BTreeSet<&str> = table.iter().map(|r| r.operation_id).collect();
        assert_eq!(ids.len(), table.len(), "operationIds must be unique");
    }
}
