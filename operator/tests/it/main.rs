//! Integration tests of the operator on the real control-plane test bed (kube-apiserver with
//! NodeRestriction and RBAC, scheduler, controller-manager, kwok nodes): one test binary, one
//! module per capability.

mod authority;
mod backups;
mod credentials;
mod guard;
mod leader;
mod manifests;
mod node_restriction;
mod prune;
mod qualification;
mod render;
mod supply;
mod util;
mod workplace;
