//! Leader election with a `coordination.k8s.io/v1` Lease, as client-go does it: a replica
//! reconciles only while it holds the Lease. It renews every `duration / 3`; another replica
//! takes over once the Lease has not changed for a whole `duration`, as seen on its own clock
//! (no clock comparison between nodes). Every takeover and renewal is an update with the
//! Lease's resourceVersion, so two replicas can never both win. A leader that cannot renew
//! within `duration` stops (the process exits and restarts as a candidate).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::time::Instant;

/// The Lease the controller replicas compete for.
pub const LEASE_NAME: &str = "hal0-controller";

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("the Lease {0} could not be renewed within {1:?}; leadership is lost")]
    Lost(String, Duration),
    #[error("reading or writing the Lease {0} failed")]
    Api(String, #[source] kube::Error),
}

/// One candidate.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    /// The Lease's resourceVersion when last seen, and when (local clock).
    observed: Option<(String, Instant)>,
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

impl Elector {
    pub fn new(api: Api<Lease>, identity: String, duration: Duration) -> Self {
        Elector {
            api,
            name: LEASE_NAME.to_string(),
            identity,
            duration,
            observed: None,
        }
    }

    fn secs(&self) -> i32 {
        i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// One attempt to take or renew the Lease: true when this candidate holds it now.
    pub async fn try_acquire(&mut self) -> Result<bool, LeaderError> {
        let err = |e| LeaderError::Api(self.name.clone(), e);
        let Some(mut lease) = self.api.get_opt(&self.name).await.map_err(err)? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.secs()),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(LeaderError::Api(self.name.clone(), e)),
            };
        };
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let seen_at = match &self.observed {
            Some((v, at)) if *v == version => *at,
            _ => Instant::now(),
        };
        self.observed = Some((version, seen_at));
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let held_for = Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0),
        );
        let mine = holder == self.identity;
        let free = holder.is_empty() || seen_at.elapsed() > held_for.max(self.duration);
        if !mine && !free {
            return Ok(false);
        }
        if !mine {
            spec.acquire_time = Some(now());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            spec.holder_identity = Some(self.identity.clone());
        }
        spec.renew_time = Some(now());
        spec.lease_duration_seconds = Some(self.secs());
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                if let Some(v) = written.metadata.resource_version {
                    self.observed = Some((v, Instant::now()));
                }
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(LeaderError::Api(self.name.clone(), e)),
        }
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&mut self) {
        let retry = (self.duration / 5).max(Duration::from_millis(200));
        let mut waiting_logged = false;
        loop {
            match self.try_acquire().await {
                Ok(true) => {
                    tracing::info!(identity = %self.identity, lease = %self.name, "became the leader");
                    return;
                }
                Ok(false) if !waiting_logged => {
                    tracing::info!(lease = %self.name, "another replica leads; waiting");
                    waiting_logged = true;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// Renews the Lease until a renewal has failed for a whole lease duration; then returns
    /// the error. Never returns while leadership holds.
    pub async fn keep(&mut self) -> LeaderError {
        let every = (self.duration / 3).max(Duration::from_millis(100));
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(every).await;
            match self.try_acquire().await {
                Ok(true) => last_ok = Instant::now(),
                Ok(false) => {
                    return LeaderError::Lost(self.name.clone(), self.duration);
                }
                Err(e) => tracing::warn!(error = %e, "cannot renew the leader Lease"),
            }
            if last_ok.elapsed() > self.duration {
                return LeaderError::Lost(self.name.clone(), self.duration);
            }
        }
    }

    /// Gives the Lease up (on shutdown), so the next leader need not wait for it to expire.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        if let Err(e) = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(error = %e, "cannot release the leader Lease");
        } else {
            tracing::info!(lease = %self.name, "released the leader Lease");
        }
    }
}
