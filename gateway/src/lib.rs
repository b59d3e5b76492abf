//! The operator's gateway (`cloister-gateway`): it opens the outer OHTTP layer ([`outer`]),
//! serves the node directory with each node's evidence and log proof, redeems each Privacy
//! Pass token once ([`credentials`], [`redeem`]) against the spent-token store ([`spent`]), and
//! forwards the still-sealed inner message to the node the device chose ([`nodes`]). It sees a
//! token, a node id and sealed bytes — never who asked (the relay, `cloister-relay`, hides the
//! address) nor what (the inner layer is the node's).
#![forbid(unsafe_code)]

pub mod credentials;
pub mod crl;
pub mod directory;
pub mod fleet;
pub mod gateway;
pub mod logkeys;
pub mod nodes;
pub mod outer;
pub mod redeem;
pub mod spent;
