//! Live registries: the virtual hosts and the open connections of a broker. Both
//! change while the broker runs (a vhost added or removed, a connection opened or
//! closed), and both are read by whoever asks what the broker is serving, such as the
//! HTTP API to come; nothing on the publish or delivery path touches them.

use crate::broker::VHost;
use crate::broker::channels::{ChannelSlot, ChannelTable};
use amq_protocol::types::FieldTable;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::SystemTime;
use tokio::sync::watch;

/// The virtual hosts by name.
#[derive(Default)]
pub struct VHosts {
    map: RwLock<HashMap<String, Arc<VHost>>>,
}

impl VHosts {
    pub fn get(&self, name: &str) -> Option<Arc<VHost>> {
        self.read().get(name).cloned()
    }

    /// Adds a virtual host unless one has its name; returns the one registered.
    pub fn add(&self, name: &str, make: impl FnOnce() -> VHost) -> Arc<VHost> {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_owned())
            .or_insert_with(|| Arc::new(make()))
            .clone()
    }

    pub fn remove(&self, name: &str) -> Option<Arc<VHost>> {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.remove(name)
    }

    pub fn all(&self) -> Vec<Arc<VHost>> {
        self.read().values().cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<VHost>>> {
        // The map is only changed by single inserts and removes: a poisoned lock
        // still guards consistent data.
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a connection is, as it registers once its handshake is done.
pub struct NewConnection {
    pub id: u64,
    pub user: String,
    pub vhost: Arc<str>,
    pub peer: SocketAddr,
    /// The listener's address the client connected to.
    pub local: SocketAddr,
    pub client_properties: FieldTable,
    /// The SASL mechanism the client logged in with.
    pub auth_mechanism: String,
    pub channel_max: u16,
    pub frame_max: u32,
    /// The negotiated heartbeat, in seconds.
    pub heartbeat: u16,
    /// How the connection is encrypted; None: plain TCP.
    pub tls: Option<TlsInfo>,
}

/// What the management API shows of a TLS connection (RabbitMQ's `ssl_*` and
/// `peer_cert_subject` fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `tlsv1.3` or `tlsv1.2`, as RabbitMQ names the versions.
    pub protocol: String,
    /// The negotiated cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// The client certificate's subject, when it presented one.
    pub peer_subject: Option<String>,
}

/// One open connection, as the registry lists it.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub id: u64,
    pub user: String,
    pub vhost: Arc<str>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub client_properties: FieldTable,
    pub auth_mechanism: String,
    pub channel_max: u16,
    pub frame_max: u32,
    pub heartbeat: u16,
    pub connected_at: SystemTime,
    pub channels: usize,
    pub tls: Option<TlsInfo>,
}

impl ConnectionInfo {
    /// The connection's name as RabbitMQ gives it: `peer -> local`.
    pub fn name(&self) -> String {
        connection_name(self.peer, self.local)
    }
}

/// `127.0.0.1:54321 -> 127.0.0.1:5672`, RabbitMQ's name for a network connection.
pub fn connection_name(peer: SocketAddr, local: SocketAddr) -> String {
    format!(
        "{}:{} -> {}:{}",
        host(peer),
        peer.port(),
        host(local),
        local.port()
    )
}

/// An address's host as RabbitMQ prints it (IPv4-mapped IPv6 addresses as IPv4).
pub fn host(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.ip().to_string(),
        },
        SocketAddr::V4(v4) => v4.ip().to_string(),
    }
}

/// A registered connection: what it is, how many channels it has open, and the
/// handle that asks it to close.
pub struct ConnectionEntry {
    info: NewConnection,
    connected_at: SystemTime,
    channels: AtomicUsize,
    close: watch::Sender<Option<String>>,
    /// The connection's open channels and their figures.
    table: Arc<ChannelTable>,
    /// Bytes received and sent, as the connection last recorded them.
    recv_oct: AtomicU64,
    send_oct: AtomicU64,
    /// The rates of the byte counts, as the management API last sampled them.
    pub rates: crate::metrics::rates::RateSet,
}

impl ConnectionEntry {
    pub fn info(&self) -> ConnectionInfo {
        ConnectionInfo {
            id: self.info.id,
            user: self.info.user.clone(),
            vhost: self.info.vhost.clone(),
            peer: self.info.peer,
            local: self.info.local,
            client_properties: self.info.client_properties.clone(),
            auth_mechanism: self.info.auth_mechanism.clone(),
            channel_max: self.info.channel_max,
            frame_max: self.info.frame_max,
            heartbeat: self.info.heartbeat,
            connected_at: self.connected_at,
            channels: self.channels.load(Ordering::Relaxed),
            tls: self.info.tls.clone(),
        }
    }

    /// The connection's open channels.
    pub fn channel_table(&self) -> &ChannelTable {
        &self.table
    }

    pub fn user(&self) -> &str {
        &self.info.user
    }

    /// Bytes received from and sent to the client so far.
    pub fn traffic(&self) -> (u64, u64) {
        (
            self.recv_oct.load(Ordering::Relaxed),
            self.send_oct.load(Ordering::Relaxed),
        )
    }

    /// Asks the connection to close: it sends connection.close with reply code 320
    /// (CONNECTION_FORCED) and `reason` as the text, as RabbitMQ does when an
    /// operator closes a connection.
    pub fn close(&self, reason: &str) {
        self.close.send_replace(Some(reason.to_owned()));
    }
}

/// The open connections by id.
#[derive(Default)]
pub struct Connections {
    map: Mutex<HashMap<u64, Arc<ConnectionEntry>>>,
    /// Connections registered since the broker started (for the metrics).
    opened: AtomicU64,
    /// Registrations dropped since the broker started.
    closed: AtomicU64,
}

impl Connections {
    /// Registers an opened connection. It stays listed until the returned
    /// [`Registration`] is dropped; the receiver yields the reason when someone asks
    /// the connection to close.
    pub fn register(
        self: &Arc<Self>,
        info: NewConnection,
    ) -> (Registration, watch::Receiver<Option<String>>) {
        let (close, requests) = watch::channel(None);
        let entry = Arc::new(ConnectionEntry {
            info,
            connected_at: SystemTime::now(),
            channels: AtomicUsize::new(0),
            close,
            table: Arc::default(),
            recv_oct: AtomicU64::new(0),
            send_oct: AtomicU64::new(0),
            rates: Default::default(),
        });
        self.lock().insert(entry.info.id, entry.clone());
        self.opened.fetch_add(1, Ordering::Relaxed);
        let registration = Registration {
            entry,
            registry: self.clone(),
        };
        (registration, requests)
    }

    /// Connections opened and closed since the broker started.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.opened.load(Ordering::Relaxed),
            self.closed.load(Ordering::Relaxed),
        )
    }

    pub fn list(&self) -> Vec<ConnectionInfo> {
        let mut all: Vec<ConnectionInfo> = self.lock().values().map(|e| e.info()).collect();
        all.sort_by_key(|c| c.id);
        all
    }

    pub fn get(&self, id: u64) -> Option<Arc<ConnectionEntry>> {
        self.lock().get(&id).cloned()
    }

    /// Every open connection's entry, by id.
    pub fn entries(&self) -> Vec<Arc<ConnectionEntry>> {
        let mut all: Vec<Arc<ConnectionEntry>> = self.lock().values().cloned().collect();
        all.sort_by_key(|e| e.info.id);
        all
    }

    /// The connection named `name` (see [`connection_name`]).
    pub fn by_name(&self, name: &str) -> Option<Arc<ConnectionEntry>> {
        self.lock()
            .values()
            .find(|e| connection_name(e.info.peer, e.info.local) == name)
            .cloned()
    }

    /// Asks connection `id` to close with `reason`; false if it is not open.
    pub fn close(&self, id: u64, reason: &str) -> bool {
        match self.get(id) {
            Some(entry) => {
                entry.close(reason);
                true
            }
            None => false,
        }
    }

    /// Asks every connection to virtual host `vhost` to close with `reason`.
    pub fn close_vhost(&self, vhost: &str, reason: &str) {
        for entry in self.lock().values() {
            if &*entry.info.vhost == vhost {
                entry.close(reason);
            }
        }
    }

    /// Asks every connection of user `user` to close with `reason`.
    pub fn close_user(&self, user: &str, reason: &str) {
        for entry in self.lock().values() {
            if entry.info.user == user {
                entry.close(reason);
            }
        }
    }

    /// How many connections are open to virtual host `vhost`.
    pub fn count_vhost(&self, vhost: &str) -> usize {
        self.lock()
            .values()
            .filter(|e| &*e.info.vhost == vhost)
            .count()
    }

    /// How many connections user `user` has open, and how many channels on them.
    pub fn count_user(&self, user: &str) -> (usize, usize) {
        self.lock()
            .values()
            .filter(|e| e.info.user == user)
            .fold((0, 0), |(c, ch), e| {
                (c + 1, ch + e.channels.load(Ordering::Relaxed))
            })
    }

    /// How many channels are open on every connection.
    pub fn count_channels(&self) -> usize {
        self.lock()
            .values()
            .map(|e| e.channels.load(Ordering::Relaxed))
            .sum()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<ConnectionEntry>>> {
        // Single inserts and removes only: a poisoned lock still guards consistent data.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connection's place in the registry: removed when dropped, at the end of the
/// connection.
pub struct Registration {
    entry: Arc<ConnectionEntry>,
    registry: Arc<Connections>,
}

impl Registration {
    /// How many channels the registry counts for this connection.
    pub fn channels(&self) -> usize {
        self.entry.channels.load(Ordering::Relaxed)
    }

    /// Records how many channels the connection has open.
    pub fn set_channels(&self, n: usize) {
        self.entry.channels.store(n, Ordering::Relaxed);
    }

    /// Records the bytes received and sent so far.
    pub fn set_traffic(&self, received: u64, sent: u64) {
        self.entry.recv_oct.store(received, Ordering::Relaxed);
        self.entry.send_oct.store(sent, Ordering::Relaxed);
    }

    /// Lists channel `number` as open until the returned slot is dropped.
    pub fn open_channel(&self, number: u16) -> ChannelSlot {
        self.entry.table.open(number)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.entry.info.id);
        self.registry.closed.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(id: u64) -> NewConnection {
        NewConnection {
            id,
            user: "guest".into(),
            vhost: Arc::from("/"),
            peer: "127.0.0.1:5000".parse().expect("an address"),
            local: "127.0.0.1:5672".parse().expect("an address"),
            client_properties: FieldTable::default(),
            auth_mechanism: "PLAIN".into(),
            channel_max: 2047,
            frame_max: 131072,
            heartbeat: 60,
            tls: None,
        }
    }

    #[test]
    fn a_connection_is_listed_until_its_registration_drops() {
        let registry = Arc::new(Connections::default());
        let (a, _) = registry.register(new(1));
        let (b, _) = registry.register(new(2));
        b.set_channels(3);
        let listed = registry.list();
        assert_eq!(listed.iter().map(|c| c.id).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(listed[1].channels, 3);
        assert_eq!(listed[1].name(), "127.0.0.1:5000 -> 127.0.0.1:5672");
        assert!(
            registry
                .by_name("127.0.0.1:5000 -> 127.0.0.1:5672")
                .is_some()
        );
        drop(a);
        assert_eq!(registry.list().len(), 1);
        assert!(!registry.close(1, "gone"));
    }

    #[test]
    fn close_hands_the_reason_to_the_connection() {
        let registry = Arc::new(Connections::default());
        let (_registration, mut requests) = registry.register(new(7));
        assert!(registry.close(7, "Closed via test"));
        assert!(requests.has_changed().unwrap_or(false));
        assert_eq!(
            requests.borrow_and_update().as_deref(),
            Some("Closed via test")
        );
    }
}
