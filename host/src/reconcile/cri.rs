//! The runtime's view of this node's pods, asked through CRI as kubelet
//! asks it: `Version`, then `ListPodSandbox` with no filter (every state,
//! ready or not: a sandbox that is stopped but not removed still holds its
//! attachments until its DEL).
//!
//! The client is k8s-cri's generated CRI v1 client over the runtime's unix
//! socket. Every answer that is not a full list is an error, and the
//! reconciler releases nothing on an error: a runtime that does not
//! answer, answers an error, or is not a CRI v1 runtime at all (a socket of
//! another kind, or containerd without its CRI plugin, both answer
//! `Unimplemented`) says nothing about which pods are gone.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{ListPodSandboxRequest, VersionRequest};
use tonic::transport::{Channel, Endpoint};

/// Why the runtime's list could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("{0:?} is not a CRI endpoint: give unix:///path/to/runtime.sock or the socket's path")]
    Endpoint(String),
    #[error("the runtime at {endpoint} cannot be reached: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("the runtime at {endpoint} did not answer within {0:?}", .after)]
    Timeout { endpoint: String, after: Duration },
    #[error(
        "{endpoint} does not speak CRI v1 ({what} is unimplemented there): it is not a \
         container runtime's CRI socket, or its CRI plugin is off"
    )]
    NotCri {
        endpoint: String,
        what: &'static str,
    },
    #[error("the runtime at {endpoint} answered {what} with an error: {reason}")]
    Refused {
        endpoint: String,
        what: &'static str,
        reason: String,
    },
}

/// What the runtime said.
#[derive(Debug, Clone)]
pub struct Sandboxes {
    /// The runtime's name and version, as `Version` gave them
    /// (`containerd 1.6.20~ds1`).
    pub runtime: String,
    /// Its name alone (`containerd`, `cri-o`): which runtime made the
    /// node's pods, as the passes remember it.
    pub name: String,
    /// The id of every sandbox it knows, in any state: the container id of
    /// each of the sandbox's CNI attachments.
    pub ids: BTreeSet<String>,
}

/// The socket `endpoint` names: `unix:///run/containerd/containerd.sock`,
/// or the path alone, as crictl takes them.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, CriError> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(CriError::Endpoint(endpoint.to_string()))
    }
}

/// A gRPC channel to the runtime's socket. tonic dials URIs; the connector
/// ignores the URI and dials the socket, as kubelet's client does.
pub async fn channel(endpoint: &str) -> Result<Channel, CriError> {
    let path = socket_path(endpoint)?;
    let unreachable = |reason: String| CriError::Unreachable {
        endpoint: endpoint.to_string(),
        reason,
    };
    Endpoint::try_from("http://[::]:0")
        .map_err(|e| unreachable(e.to_string()))?
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|e| unreachable(crate::diag::innermost(&e)))
}

/// Asks the runtime at `endpoint` for every sandbox it knows, within
/// `timeout` in all.
pub fn sandboxes(endpoint: &str, timeout: Duration) -> Result<Sandboxes, CriError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CriError::Unreachable {
            endpoint: endpoint.to_string(),
            reason: format!("cannot start the client's runtime: {e}"),
        })?;
    rt.block_on(async {
        tokio::time::timeout(timeout, ask(endpoint))
            .await
            .unwrap_or_else(|_| {
                Err(CriError::Timeout {
                    endpoint: endpoint.to_string(),
                    after: timeout,
                })
            })
    })
}

async fn ask(endpoint: &str) -> Result<Sandboxes, CriError> {
    let mut client = RuntimeServiceClient::new(channel(endpoint).await?);
    let failed = |what: &'static str| {
        move |status: tonic::Status| match status.code() {
            tonic::Code::Unimplemented => CriError::NotCri {
                endpoint: endpoint.to_string(),
                what,
            },
            tonic::Code::Unavailable => CriError::Unreachable {
                endpoint: endpoint.to_string(),
                reason: status.message().to_string(),
            },
            _ => CriError::Refused {
                endpoint: endpoint.to_string(),
                what,
                reason: format!("{:?}: {}", status.code(), status.message()),
            },
        }
    };
    let version = client
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .map_err(failed("Version"))?
        .into_inner();
    let list = client
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .map_err(failed("ListPodSandbox"))?
        .into_inner();
    Ok(Sandboxes {
        runtime: format!("{} {}", version.runtime_name, version.runtime_version),
        name: version.runtime_name,
        ids: list.items.into_iter().map(|s| s.id).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_unix_sockets_by_url_or_path() {
        assert_eq!(
            socket_path("unix:///run/containerd/containerd.sock").unwrap(),
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert_eq!(
            socket_path("/run/crio/crio.sock").unwrap(),
            PathBuf::from("/run/crio/crio.sock")
        );
        for bad in ["tcp://10.0.0.1:1234", "containerd.sock", "unix://relative"] {
            let e = socket_path(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("unix://"), "{e}");
        }
    }

    #[test]
    fn a_missing_socket_is_unreachable_and_names_it() {
        let e = sandboxes("unix:///nonexistent/cri.sock", Duration::from_secs(2)).unwrap_err();
        assert!(
            matches!(&e, CriError::Unreachable { endpoint, .. } if endpoint.contains("/nonexistent/cri.sock")),
            "{e:?}"
        );
        assert!(e.to_string().contains("No such file"), "{e}");
    }
}
