//! The run's location table: every candidate location gets an index (what the plan, the
//! spills and the listing's parts carry), and each new one is sent to the listing as soon as
//! it is known.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use super::Location;

/// Where a table sends each new location with its index: the listing.
pub(crate) type ToListing = mpsc::UnboundedSender<(u32, Location)>;

/// Shared by the manifests stage, which registers the locations unified manifests name, and
/// the run, which closes it once every manifest is read.
#[derive(Clone)]
pub(crate) struct LocationTable(Arc<Mutex<Table>>);

struct Table {
    locations: Vec<Location>,
    index: HashMap<Location, u32>,
    listing: Option<ToListing>,
}

impl LocationTable {
    /// A table whose new locations go to `listing`; `None` lists nothing (`--apply-plan`,
    /// `--explain` only need the indexes).
    pub fn new(listing: Option<ToListing>) -> Self {
        Self(Arc::new(Mutex::new(Table { locations: Vec::new(), index: HashMap::new(), listing })))
    }

    /// A table starting with `known`, in order (a reviewed plan's locations keep their indexes).
    pub(crate) fn starting_with<'a>(listing: Option<ToListing>, known: impl IntoIterator<Item = &'a Location>) -> Self {
        let table = Self::new(listing);
        known.into_iter().for_each(|location| {
            table.register(location);
        });
        table
    }

    /// The location's index, registering it (and starting its listing) if it is new.
    pub(crate) fn register(&self, location: &Location) -> u32 {
        let mut table = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(&index) = table.index.get(location) {
            return index;
        }
        let index = table.locations.len() as u32;
        table.locations.push(location.clone());
        table.index.insert(location.clone(), index);
        if let Some(listing) = &table.listing {
            // The listing only stops receiving when the run is being torn down.
            let _ = listing.send((index, location.clone()));
        }
        index
    }

    /// Every location registered, in index order; later ones are no longer listed.
    pub fn close(&self) -> Vec<Location> {
        let mut table = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        table.listing = None;
        table.locations.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_location_is_indexed_and_listed_once() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let table = LocationTable::new(Some(tx));
        let a = Location::new("chunks-a", "p1/chunks").unwrap();
        let b = Location::new("chunks-b", "p1/chunks").unwrap();
        assert_eq!(table.register(&a), 0);
        assert_eq!(table.register(&b), 1);
        assert_eq!(table.register(&a), 0, "a known location keeps its index");
        assert_eq!(rx.try_recv().unwrap(), (0, a.clone()));
        assert_eq!(rx.try_recv().unwrap(), (1, b.clone()));
        assert!(rx.try_recv().is_err(), "listed once");
        assert_eq!(table.close(), vec![a, b.clone()]);
        let c = Location::new("chunks-c", "p1/chunks").unwrap();
        assert_eq!(table.register(&c), 2);
        assert!(rx.try_recv().is_err(), "a closed table lists nothing more");
    }
}
