//! The in-memory store and the recording notifier pass their conformance suites.

use std::sync::Arc;

use payments_core::testing::{notifier, store};
use payments_core::{InMemoryStore, RecordingNotifier, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_store_passes_the_store_suite() {
    store::run_all(|| async { Arc::new(InMemoryStore::new()) as Arc<dyn Store> }).await;
}

#[tokio::test]
async fn recording_notifier_passes_the_notifier_suite() {
    let n = RecordingNotifier::new();
    notifier::run_all(&n, &n).await;
}
