//! `Application::build` prepares everything (keys, database, documents) and
//! binds; `run_until_stopped` serves until SIGTERM or Ctrl-C. Tests bind port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::email::EmailError;
use crate::keys::{self, KeyError, Keys, MasterKeys};
use crate::service::signing_keys::{self, KeysError};
use crate::state::AppState;
use crate::store::{self, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    SigningKeys(#[from] KeysError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("email: {0}")]
    Email(#[from] EmailError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("key `metrics.listen`: cannot listen on {addr}: {reason}")]
    MetricsBind { addr: String, reason: String },
}

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    local_addr: SocketAddr,
    /// The `/metrics` listener and its address, apart from the public one
    /// (`metrics.listen`; none when empty).
    metrics: Option<(TcpListener, SocketAddr)>,
    /// For the background tasks `run_until` starts beside the server.
    state: AppState,
}

impl Application {
    /// Binds `settings.listen` and prepares the server.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let started = Instant::now();
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|e| StartError::Bind {
                addr: settings.listen,
                reason: e.to_string(),
            })?;
        let app = Self::build_with_listener(settings, listener, Arc::new(SystemClock)).await?;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "ready to serve"
        );
        Ok(app)
    }

    /// Serves on an already bound listener (tests bind port 0) with a chosen clock.
    pub async fn build_with_listener(
        settings: Settings,
        listener: TcpListener,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        // The master key before the database: a broken file stops the start
        // at once.
        let master = load_master(&settings)?;
        let metrics = bind_metrics(&settings).await?;
        let db = open_database(&settings).await?;
        let keys = signing_keys_on(&settings, &db, master, clock.now().timestamp_millis()).await?;
        let mut app = Self::assemble(settings, listener, keys, db, clock)?;
        app.metrics = metrics;
        if let Some((_, address)) = &app.metrics {
            tracing::info!(%address, "serving /metrics");
        }
        Ok(app)
    }

    fn assemble(
        settings: Settings,
        listener: TcpListener,
        keys: Keys,
        db: sea_orm::DatabaseConnection,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let local_addr = listener.local_addr().map_err(|e| StartError::Bind {
            addr: settings.listen,
            reason: e.to_string(),
        })?;
        let state = AppState::new(settings, keys, db, clock)?;
        tracing::info!(
            address = %local_addr,
            issuer = %state.settings.issuer,
            database = store::backend_name(&state.store.db),
            signing_kid = %state
                .keys
                .signer(state.now_ms())
                .map_or_else(|| "none".to_owned(), |k| k.kid.clone()),
            "listening"
        );
        Ok(Self {
            listener,
            router: crate::http::router(state.clone()),
            local_addr,
            metrics: None,
            state,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What the handlers share (tests and commands reach the services
    /// through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// Where `/metrics` is served (`metrics.listen`), `None` when off.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, addr)| *addr)
    }

    /// Serves until SIGTERM or Ctrl-C, then finishes the requests in flight.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `signal` completes, then shuts down gracefully: no new
    /// connections, the requests in flight finish, for at most
    /// `http.shutdown_grace_secs` (a request still running then is cut
    /// off; what it had committed stays, what it had not is not
    /// acknowledged). The sweep of expired rows, the mail worker and the
    /// reader of the signing keys and the scanner of the master keys run beside the server and stop with it
    /// (a message cut off mid-send is sent again by the next node whose
    /// worker finds its lease run out: `service::mail`).
    pub async fn run_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let sweeper = (self.state.settings.sweep.interval_secs > 0)
            .then(|| tokio::spawn(crate::service::sweep::run(self.state.clone())));
        let mail_worker = tokio::spawn(crate::service::mail::run(self.state.clone()));
        let metrics_server = self.metrics.and_then(|(listener, _)| {
            let router = metrics_router(&self.state)?;
            Some(tokio::spawn(async move {
                if let Err(error) = axum::serve(listener, router).await {
                    tracing::error!(%error, "the /metrics listener stopped");
                }
            }))
        });
        let key_reader = tokio::spawn(signing_keys::run(self.state.clone()));
        let master_key_scanner = tokio::spawn(crate::service::master_key::run(self.state.clone()));
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let (fired, signalled) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            signal.await;
            let _ = fired.send(());
        };
        let grace = std::time::Duration::from_secs(self.state.settings.http.shutdown_grace_secs);
        let grace_over = async move {
            match signalled.await {
                Ok(()) => tokio::time::sleep(grace).await,
                // The server stopped without the signal.
                Err(_) => std::future::pending().await,
            }
        };
        let serving = axum::serve(self.listener, service)
            .with_graceful_shutdown(signal)
            .into_future();
        let served = tokio::select! {
            served = serving => served,
            () = grace_over => {
                tracing::warn!(grace_secs = grace.as_secs(), "shutdown grace ran out; stopping with requests still in flight");
                Ok(())
            }
        };
        if let Some(sweeper) = sweeper {
            sweeper.abort();
        }
        mail_worker.abort();
        // A scrape cut off is repeated by Prometheus at its next interval.
        if let Some(metrics_server) = metrics_server {
            metrics_server.abort();
        }
        key_reader.abort();
        master_key_scanner.abort();
        served
    }
}

/// Binds `metrics.listen`, unless it is empty.
async fn bind_metrics(
    settings: &Settings,
) -> Result<Option<(TcpListener, SocketAddr)>, StartError> {
    let failed = |reason: String| StartError::MetricsBind {
        addr: settings.metrics.listen.clone(),
        reason,
    };
    let Some(addr) = settings.metrics.listen_addr().map_err(failed)? else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let bound = listener.local_addr().map_err(|e| failed(e.to_string()))?;
    Ok(Some((listener, bound)))
}

/// The metrics listener's one route: `GET /metrics`, the registry's text
/// with the database pool read at that moment. Anything else is 404.
fn metrics_router(state: &AppState) -> Option<axum::Router> {
    let metrics = state.metrics.clone()?;
    let db = state.store.db.clone();
    let scrape = move || {
        let text = metrics.render(store::pool_connections(&db));
        async move {
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    crate::metrics::CONTENT_TYPE,
                )],
                text,
            )
        }
    };
    Some(axum::Router::new().route("/metrics", axum::routing::get(scrape)))
}

fn load_master(settings: &Settings) -> Result<MasterKeys, StartError> {
    let (masters, created) = keys::load_or_create_master(&settings.keys_dir)?;
    if created {
        tracing::info!(dir = %settings.keys_dir.display(), "created the master key");
    }
    if masters.files().len() > 1 {
        tracing::info!(
            ids = ?masters.ids(),
            sealing = %masters.sealing().id(),
            "loaded several master keys: a master-key rotation is under way (keys rotate-master)"
        );
    }
    Ok(masters)
}

/// The signing keys on a migrated database (`service::signing_keys::prepare`:
/// key files imported, a first key created), logged.
async fn signing_keys_on(
    settings: &Settings,
    db: &sea_orm::DatabaseConnection,
    masters: MasterKeys,
    now: i64,
) -> Result<Keys, StartError> {
    let (ring, prepared) = signing_keys::prepare(settings, db, &masters, now).await?;
    if let Some(error) = prepared.unreadable.into_iter().next() {
        return Err(error.into());
    }
    if !prepared.imported.is_empty() {
        tracing::info!(
            dir = %settings.keys_dir.display(),
            kids = ?prepared.imported,
            "imported the signing key files into the database; the signing-*.pem files may be removed"
        );
    }
    if let Some(kid) = prepared.created {
        tracing::info!(%kid, "created a signing key");
    }
    Ok(Keys::new(masters, ring))
}

/// The state a command (or a test) needs to act like the server would, on
/// an open, migrated database: the master key, the signing keys, the mailer.
pub async fn state_on(
    settings: Settings,
    db: sea_orm::DatabaseConnection,
    clock: Arc<dyn Clock>,
) -> Result<AppState, StartError> {
    let master = load_master(&settings)?;
    let keys = signing_keys_on(&settings, &db, master, clock.now().timestamp_millis()).await?;
    Ok(AppState::new(settings, keys, db, clock)?)
}

async fn open_database(settings: &Settings) -> Result<sea_orm::DatabaseConnection, StartError> {
    let db = store::connect(settings).await?;
    if settings.database.migrate_on_start {
        let applied = store::migrate(&db).await?;
        if !applied.is_empty() {
            tracing::info!(?applied, "applied database migrations");
        }
    }
    Ok(db)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
