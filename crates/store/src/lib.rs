//! SQLite and PostgreSQL storage: migrations, tenant-scoped repositories, audit chain, rollups.
