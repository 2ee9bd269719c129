//! The shared store suite against a real SQLite database file.

mod suite;

use std::sync::Arc;

use secumon_store::{SqliteStore, Store, StoreOptions};

struct Sqlite {
    dir: tempfile::TempDir,
}

#[async_trait::async_trait]
impl suite::Backend for Sqlite {
    async fn open_with(&self, options: StoreOptions) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open_with(&self.dir.path().join("store.db"), options).await.unwrap())
    }
}

async fn sqlite() -> Option<Sqlite> {
    Some(Sqlite { dir: tempfile::tempdir().unwrap() })
}

store_suite!(sqlite:
    stores_queries_and_drops_duplicates,
    tenants_do_not_see_each_other,
    large_batches_with_every_part_survive_reopen,
    state_documents_survive_reopen_per_tenant,
    alert_history_is_kept_per_tenant_and_rule_newest_first,
    rejects_nonsense_queries,
    findings_open_fix_reopen_with_samples_and_events,
    compaction_keeps_every_sample_and_queries_merge_chunks_and_head,
    special_values_come_back_bit_for_bit,
    far_future_samples_are_refused_naming_the_series,
    many_labels_and_any_utf8_are_kept,
    old_ranges_are_answered_from_rollups_after_raw_expires,
    retention_expires_logs_events_and_history,
);
