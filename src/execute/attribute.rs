//! Which keys of an `object_store` bulk delete were deleted: `delete_stream`'s results
//! matched back to the keys sent, failing closed.

use std::collections::HashMap;

use object_store::path::Path;

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Deleted {
    Yes,
    /// The backend said the object was not there: done, as spec 4.6 says.
    AlreadyGone,
    No(String),
}

/// The outcome of each of `paths` from what `delete_stream` returned for them.
///
/// Every `object_store` backend yields one result per input path, in input order (S3's bulk
/// delete maps its per-key `<Error>` elements back to their positions); then results are
/// matched by position. When a backend yields fewer (an S3 bulk request that failed as a
/// whole yields one error for all its keys), a path counts as deleted only if a result names
/// it; every other path is reported failed with the errors seen. Fail closed: a key is never
/// reported deleted without a result naming it.
pub(super) fn attribute(paths: &[Path], results: Vec<object_store::Result<Path>>) -> Vec<Deleted> {
    let positional = results.len() == paths.len()
        && results.iter().zip(paths).all(|(r, p)| match r {
            Ok(done) => done == p,
            Err(object_store::Error::NotFound { path, .. }) => path.is_empty() || path == p.as_ref(),
            Err(_) => true,
        });
    if positional {
        return results
            .into_iter()
            .map(|r| match r {
                Ok(_) => Deleted::Yes,
                Err(object_store::Error::NotFound { .. }) => Deleted::AlreadyGone,
                Err(e) => Deleted::No(e.to_string()),
            })
            .collect();
    }
    let mut named: HashMap<String, Deleted> = HashMap::new();
    let mut errors: Vec<String> = Vec::new();
    for result in results {
        match result {
            Ok(path) => {
                named.insert(path.to_string(), Deleted::Yes);
            }
            Err(object_store::Error::NotFound { path, .. }) if !path.is_empty() => {
                named.insert(path, Deleted::AlreadyGone);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let why = if errors.is_empty() {
        "the store's bulk delete returned no result for this key".to_owned()
    } else {
        format!("bulk delete failed: {}", errors.join("; "))
    };
    paths.iter().map(|p| named.remove(p.as_ref()).unwrap_or_else(|| Deleted::No(why.clone()))).collect()
}
