//! `/mgmt/backends`: backend services that policies can route to.

use gatehouse_model::resources::{Backend, Collection};

crate::handlers::simple_crud! {
    type: Backend,
    tag: "backends",
    collection: "/mgmt/backends",
    item: "/mgmt/backends/{backendId}",
    param: "backendId",
    children: []
}
