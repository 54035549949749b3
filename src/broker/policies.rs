//! Operator actions on policies and operator policies: the functions the
//! definitions import, the HTTP API and the CLI share.

use super::Broker;
use crate::access::Policy;
use crate::model::{BrokerError, BrokerResult};

impl Broker {
    /// Creates or replaces a policy (`operator`: an operator policy).
    pub fn set_policy(&self, p: Policy, operator: bool) -> BrokerResult<()> {
        if self.vhost(&p.vhost).is_none() {
            return Err(BrokerError::NotFound(format!("no vhost '{}'", p.vhost)));
        }
        self.access().update(|s| {
            let list = if operator {
                &mut s.operator_policies
            } else {
                &mut s.policies
            };
            list.retain(|q| !(q.vhost == p.vhost && q.name == p.name));
            list.push(p);
        });
        Ok(())
    }

    /// Deletes a policy. False if there was none.
    pub fn clear_policy(&self, vhost: &str, name: &str, operator: bool) -> bool {
        let (found, _) = self.access().update(|s| {
            let list = if operator {
                &mut s.operator_policies
            } else {
                &mut s.policies
            };
            let before = list.len();
            list.retain(|q| !(q.vhost == vhost && q.name == name));
            before != list.len()
        });
        found
    }
}
