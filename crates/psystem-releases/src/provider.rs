//! The release providers psystem knows, chosen by a plugin's `source.provider`, and dispatch to their modules.

use std::fmt;
use std::str::FromStr;

use psystem_transport::Transport;
use serde::Serialize;

use crate::model::{Release, ReleaseName};
use crate::{opentargets, uniprot, ReleaseError};

/// A release provider: whose folder layout and naming the releases under `source.url` follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Open Targets Platform: `YY.MM/` folders of Parquet datasets ([`crate::opentargets`]).
    OpenTargets,
    /// UniProtKB: `current_release/` and `previous_releases/release-YYYY_MM/`, flat files
    /// ([`crate::uniprot`]).
    UniProt,
}

impl Provider {
    /// Every provider, in the order error messages list them.
    pub const ALL: [Provider; 2] = [Provider::OpenTargets, Provider::UniProt];

    /// The name used in `source.provider`: `opentargets` or `uniprot`.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::OpenTargets => "opentargets",
            Provider::UniProt => "uniprot",
        }
    }

    /// The provider of a plugin's `source.provider`: `opentargets` or `uniprot` (ASCII case ignored); `None`
    /// (a release plugin written before providers were told apart) is Open Targets.
    ///
    /// Errors: [`ReleaseError::UnknownProvider`] listing the known names.
    pub fn from_plugin(provider: Option<&str>) -> Result<Provider, ReleaseError> {
        provider.map_or(Ok(Provider::OpenTargets), str::parse)
    }

    /// The releases the source offers, newest first, the newest (or UniProt's current one) marked `latest`:
    /// [`opentargets::list_releases`] or [`uniprot::list_releases`].
    pub async fn list_releases(
        self,
        transport: &Transport,
    ) -> Result<Vec<ReleaseName>, ReleaseError> {
        match self {
            Provider::OpenTargets => opentargets::list_releases(transport).await,
            Provider::UniProt => uniprot::list_releases(transport).await,
        }
    }

    /// A release argument (`None` / `latest` / a name) resolved to a release name:
    /// [`opentargets::resolve_release`] or [`uniprot::resolve_release`].
    pub async fn resolve_release(
        self,
        transport: &Transport,
        source: &str,
        wanted: Option<&str>,
    ) -> Result<String, ReleaseError> {
        match self {
            Provider::OpenTargets => opentargets::resolve_release(transport, source, wanted).await,
            Provider::UniProt => uniprot::resolve_release(transport, source, wanted).await,
        }
    }

    /// A release's datasets and files: [`opentargets::discover`] or [`uniprot::discover`]. `source` is the
    /// plugin name (the cache key).
    pub async fn discover(
        self,
        transport: &Transport,
        source: &str,
        release: &str,
    ) -> Result<Release, ReleaseError> {
        match self {
            Provider::OpenTargets => opentargets::discover(transport, source, release).await,
            Provider::UniProt => uniprot::discover(transport, source, release).await,
        }
    }
}

impl FromStr for Provider {
    type Err = ReleaseError;

    /// `opentargets` or `uniprot` (ASCII case ignored); anything else is [`ReleaseError::UnknownProvider`].
    fn from_str(s: &str) -> Result<Provider, ReleaseError> {
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ReleaseError::UnknownProvider {
                provider: s.to_string(),
                known: Provider::ALL.map(Provider::as_str).join(", "),
            })
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_by_name() {
        assert_eq!("uniprot".parse::<Provider>().unwrap(), Provider::UniProt);
        assert_eq!(
            "OpenTargets".parse::<Provider>().unwrap(),
            Provider::OpenTargets
        );
        assert_eq!(Provider::from_plugin(None).unwrap(), Provider::OpenTargets);
        assert_eq!(
            Provider::from_plugin(Some("uniprot")).unwrap(),
            Provider::UniProt
        );
        let e = Provider::from_plugin(Some("ensembl"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`ensembl`") && e.contains("opentargets, uniprot"),
            "{e}"
        );
        assert_eq!(Provider::UniProt.to_string(), "uniprot");
    }
}
