//! Set-up shared by the service's integration tests: the shared data
//! folder, actors, and an app with a release loaded, validated, approved
//! by a second person and activated.
//!
//! Each test binary includes this module and uses part of it.
#![allow(dead_code)]

use std::path::PathBuf;

use service::{Actor, App, AppConfig, DatasetId, LoadOptions, Role};
use store::testing::TestDatabase;

/// The shared real data (`NEXUS_ATTACK_SHARED`, or `../shared` beside the
/// repository).
pub fn shared() -> PathBuf {
    std::env::var_os("NEXUS_ATTACK_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

/// A data steward of the platform.
pub fn steward(name: &str) -> Actor {
    Actor {
        name: name.into(),
        org: None,
        role: Role::Steward,
    }
}

/// A member of `org` with `role`.
pub fn member(org: &service::Org, name: &str, role: Role) -> Actor {
    Actor {
        name: name.into(),
        org: Some(org.id.clone()),
        role,
    }
}

/// Loads `../shared/attack/<file>` and takes it through validation and
/// approval by a second steward, `bob`, who may activate it.
pub async fn approved_release(app: &App, file: &str) -> DatasetId {
    let path = shared().join("attack").join(file).display().to_string();
    let dataset = app
        .load_dataset(&steward("alice"), &path, &LoadOptions::default())
        .await
        .unwrap();
    app.validate_dataset(&steward("alice"), &dataset.id)
        .await
        .unwrap();
    app.approve_dataset(&steward("bob"), &dataset.id)
        .await
        .unwrap();
    dataset.id
}

/// [`approved_release`], then activated.
pub async fn activate_release(app: &App, file: &str) -> DatasetId {
    let id = approved_release(app, file).await;
    app.activate_dataset(&steward("bob"), &id).await.unwrap();
    id
}

/// An app on `db` with Enterprise 18.1 active.
pub async fn app_with_18_1(db: &TestDatabase) -> App {
    let app = App::connect(AppConfig::new(db.url.clone())).await.unwrap();
    activate_release(&app, "enterprise-attack-18.1.json.gz").await;
    app
}

/// [`app_with_18_1`] with one org, `acme`, created by the operator.
pub async fn app_with_acme(db: &TestDatabase) -> (App, service::Org) {
    let app = app_with_18_1(db).await;
    let acme = app
        .create_org(&Actor::operator("op"), "acme")
        .await
        .unwrap();
    (app, acme)
}
