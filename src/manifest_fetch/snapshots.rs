//! The manifests stage over the snapshots folder, as a run calls it: the manifests a stopped
//! reclaim held aside put back, the folder listed once and cross-checked against the two sets
//! (spec 9.2), the deleting snapshots' manifests read, then every live one.

use std::sync::Arc;

use crate::bug::Bug;
use crate::config::Config;
use crate::deleting::{self, Accounting, DeletingError, ManifestObject, Named, SnapshotCensus};
use crate::exit::Exit;
use crate::held::{HeldError, HeldFound, put_back_held};
use crate::live_set::LiveSet;
use crate::locations::{Location, LocationError, LocationTable};
use crate::manifest;
use crate::stop::{Stop, Stopped};
use crate::store::Stores;

use super::{IngestError, IngestStats, Referenced, Wanted, inventory, read_deleting, read_manifests};

/// How the manifests stage fails.
#[derive(Debug, thiserror::Error)]
pub enum ManifestsStageError {
    #[error(transparent)]
    Held(#[from] HeldError),
    #[error("location: {0}")]
    Location(#[from] LocationError),
    #[error(transparent)]
    Deleting(#[from] DeletingError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

impl ManifestsStageError {
    pub fn exit(&self) -> Exit {
        match self {
            // What a stopped reclaim held aside could not be put back.
            ManifestsStageError::Held(e) => e.exit(),
            ManifestsStageError::Location(_) => Exit::Usage,
            ManifestsStageError::Deleting(_) => Exit::LiveSet,
            ManifestsStageError::Ingest(e) => e.exit(),
            ManifestsStageError::Stopped(Stopped(signal)) => Exit::from(*signal),
        }
    }
}

/// What the stage leaves: the live references, the snapshots folder's manifest objects that
/// are not live, and (with a deleting set) the accounting of what the deleting snapshots name.
pub(crate) struct ManifestsRead {
    pub referenced: Referenced,
    pub folder: Vec<ManifestObject>,
    pub accounting: Option<Accounting>,
}

/// What the stage saw, kept for the report whether or not it ends well.
#[derive(Debug, Default)]
pub struct Seen {
    pub held: HeldFound,
    /// The snapshots folder's census, once it was cross-checked.
    pub census: Option<SnapshotCensus>,
}

/// The stage's inputs that stay the same across the modes.
pub(crate) struct ManifestsStage<'a> {
    pub stores: &'a Stores,
    pub config: &'a Config,
    pub live: &'a LiveSet,
    pub deleting: Option<&'a LiveSet>,
    pub stop: &'a Stop,
    pub stats: &'a Arc<IngestStats>,
}

impl ManifestsStage<'_> {
    /// Reads every manifest into the sinks `wanted` names, registering their locations in
    /// `table` (the legacy default's too). Stopped by a signal.
    pub async fn read(
        &self,
        table: &LocationTable,
        wanted: Wanted,
        seen: &mut Seen,
    ) -> Result<ManifestsRead, ManifestsStageError> {
        let (config, live, stop) = (self.config, self.live, self.stop);
        let legacy_location = table.register(&Location::legacy_default(&config.meta_bucket, &config.partition)?);
        if self.deleting.is_some() {
            // Manifests a stopped reclaim left renamed aside go back before the folder is read.
            let folder = manifest::snapshots_folder(&config.meta_bucket, &config.partition)?;
            seen.held = put_back_held(self.stores, &[folder], !config.mode.deletes()).await?;
        }
        let listing = inventory(self.stores, &config.meta_bucket, &config.partition, live);
        let mut inventory = stop.unless_stopped(async { Ok::<_, ManifestsStageError>(listing.await?) }).await?;
        seen.census = Some(self.cross_check(&inventory.not_live)?);
        let folder = std::mem::take(&mut inventory.not_live);
        // The deleting snapshots' manifests first: the live ones are then spilled only where
        // they name the same ids.
        let named = match self.deleting {
            Some(deleting) => {
                let reading = read_deleting(self.stores, config, deleting, &folder);
                Some(stop.unless_stopped(async { Ok::<_, ManifestsStageError>(reading.await?) }).await?)
            }
            None => None,
        };
        let wanted = Wanted { named: named.as_ref().map(|n| Arc::clone(&n.filter)), ..wanted };
        let reading = read_manifests(self.stores, config, live, inventory, table, legacy_location, wanted, self.stats);
        let mut referenced = stop.unless_stopped(async { Ok::<_, ManifestsStageError>(reading.await?) }).await?;
        let accounting = named.map(|named| accounting(named, &mut referenced)).transpose()?;
        Ok(ManifestsRead { referenced, folder, accounting })
    }

    /// Spec 9.2's cross-check: a snapshot neither live nor being deleted that has an old
    /// manifest refuses the run.
    fn cross_check(&self, not_live: &[ManifestObject]) -> Result<SnapshotCensus, DeletingError> {
        let config = self.config;
        let folder = format!("{}/{}", config.meta_bucket, manifest::snapshots_dir(&config.partition));
        let cutoff_ms = config.cutoff.timestamp_millis();
        deleting::cross_check(self.live, self.deleting, not_live, cutoff_ms, &folder)
    }
}

/// Spec 9.2's accounting as this stage leaves it: what the deleting snapshots name, and the
/// live references among those ids.
fn accounting(named: Named, referenced: &mut Referenced) -> Result<Accounting, IngestError> {
    let shared = referenced.shared.take().ok_or_else(|| Bug::new("no spill of the shared references"))?;
    Ok(Accounting { named, shared: shared.finish()?, listed: None })
}
