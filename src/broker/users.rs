//! Operator actions on users, permissions, topic permissions and vhost limits: the
//! functions the definitions import, the HTTP API and the CLI share. Each persists
//! its change at once (see [`crate::access::Access::update`]).

use super::Broker;
use crate::access::{Parameter, Permission, TopicPermission, User, model, password};
use crate::model::{BrokerError, BrokerResult};

impl Broker {
    /// Creates or replaces a user. `password`: a plaintext password, hashed here with
    /// SHA-256 (never stored); `None` keeps the hash given in `user` (as definitions
    /// carry it).
    pub fn put_user(&self, mut user: User, password: Option<&str>) -> BrokerResult<()> {
        if let Some(p) = password {
            user.hashing_algorithm = model::SHA256.to_owned();
            user.password_hash = password::hash(model::SHA256, p);
        } else if !password::known(&user.hashing_algorithm) {
            return Err(BrokerError::Invalid(format!(
                "unknown hashing algorithm '{}'",
                user.hashing_algorithm
            )));
        }
        self.access()
            .update(|s| match s.users.iter_mut().find(|u| u.name == user.name) {
                Some(u) => *u = user,
                None => s.users.push(user),
            });
        Ok(())
    }

    /// Deletes a user with its permissions, and closes the user's connections (320,
    /// as RabbitMQ does). False if there was none.
    pub fn delete_user(&self, name: &str) -> bool {
        let (found, _) = self.access().update(|s| {
            let before = s.users.len();
            s.users.retain(|u| u.name != name);
            s.permissions.retain(|p| p.user != name);
            s.topic_permissions.retain(|p| p.user != name);
            before != s.users.len()
        });
        if found {
            self.connections()
                .close_user(name, &format!("user '{name}' is deleted"));
        }
        found
    }

    /// Sets a user's permissions in a vhost (both must exist).
    pub fn set_permissions(&self, p: Permission) -> BrokerResult<()> {
        self.known_user_and_vhost(&p.user, &p.vhost)?;
        self.access().update(|s| {
            s.permissions
                .retain(|q| !(q.user == p.user && q.vhost == p.vhost));
            s.permissions.push(p);
        });
        Ok(())
    }

    /// Removes a user's permissions in a vhost. False if there were none.
    pub fn clear_permissions(&self, user: &str, vhost: &str) -> bool {
        let (found, _) = self.access().update(|s| {
            let before = s.permissions.len();
            s.permissions
                .retain(|q| !(q.user == user && q.vhost == vhost));
            before != s.permissions.len()
        });
        found
    }

    /// Sets a user's topic permissions on one exchange of a vhost.
    pub fn set_topic_permissions(&self, p: TopicPermission) -> BrokerResult<()> {
        self.known_user_and_vhost(&p.user, &p.vhost)?;
        self.access().update(|s| {
            s.topic_permissions
                .retain(|q| !(q.user == p.user && q.vhost == p.vhost && q.exchange == p.exchange));
            s.topic_permissions.push(p);
        });
        Ok(())
    }

    /// Removes a user's topic permissions in a vhost (on one exchange, or all).
    pub fn clear_topic_permissions(&self, user: &str, vhost: &str, exchange: Option<&str>) -> bool {
        let (found, _) = self.access().update(|s| {
            let before = s.topic_permissions.len();
            s.topic_permissions.retain(|q| {
                !(q.user == user && q.vhost == vhost && exchange.is_none_or(|x| q.exchange == x))
            });
            before != s.topic_permissions.len()
        });
        found
    }

    /// Sets a runtime parameter (for example component `vhost-limits`, name `limits`).
    pub fn set_parameter(&self, p: Parameter) -> BrokerResult<()> {
        if self.vhost(&p.vhost).is_none() {
            return Err(BrokerError::NotFound(format!("no vhost '{}'", p.vhost)));
        }
        self.access().update(|s| {
            s.parameters.retain(|q| {
                !(q.vhost == p.vhost && q.component == p.component && q.name == p.name)
            });
            s.parameters.push(p);
        });
        Ok(())
    }

    /// Removes a runtime parameter. False if there was none.
    pub fn clear_parameter(&self, vhost: &str, component: &str, name: &str) -> bool {
        let (found, _) = self.access().update(|s| {
            let before = s.parameters.len();
            s.parameters
                .retain(|q| !(q.vhost == vhost && q.component == component && q.name == name));
            before != s.parameters.len()
        });
        found
    }

    fn known_user_and_vhost(&self, user: &str, vhost: &str) -> BrokerResult<()> {
        if self.access().read(|s| s.user(user).is_none()) {
            return Err(BrokerError::NotFound(format!("no user '{user}'")));
        }
        if self.vhost(vhost).is_none() {
            return Err(BrokerError::NotFound(format!("no vhost '{vhost}'")));
        }
        Ok(())
    }
}
