//! Liveness that tells the truth: a process whose core task (a watch, the stream server, the follower)
//! has ended is not alive, whatever its HTTP endpoints can still say.

use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;

/// The core tasks that have ended, by name.
#[derive(Debug, Default)]
pub struct Health {
    dead: Mutex<Vec<&'static str>>,
}

/// Marks its task dead when dropped: on return, on panic (unwinding drops it) and on abort alike.
struct Watchdog(Arc<Health>, &'static str);

impl Drop for Watchdog {
    fn drop(&mut self) {
        tracing::error!(task = self.1, "a core task ended: reporting not alive");
        self.0.dead.lock().push(self.1);
    }
}

impl Health {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Spawns `task`, which should run for the life of the process.
    pub fn spawn_core<F>(self: &Arc<Self>, name: &'static str, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let watchdog = Watchdog(self.clone(), name);
        tokio::spawn(async move {
            let _watchdog = watchdog;
            task.await
        })
    }

    /// `Err` with the names of the ended core tasks.
    pub fn check(&self) -> Result<(), String> {
        let dead = self.dead.lock();
        if dead.is_empty() { Ok(()) } else { Err(format!("core task(s) ended: {}", dead.join(", "))) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_ended_or_panicked_task_is_reported() {
        let health = Health::new();
        let forever = health.spawn_core("forever", std::future::pending::<()>());
        tokio::task::yield_now().await;
        assert!(health.check().is_ok());
        health.spawn_core("watch", async {}).await.unwrap();
        assert_eq!(health.check(), Err("core task(s) ended: watch".into()));
        let panicked = health.spawn_core("follower", async { panic!("boom") }).await;
        assert!(panicked.is_err());
        assert_eq!(health.check(), Err("core task(s) ended: watch, follower".into()));
        forever.abort();
    }
}
