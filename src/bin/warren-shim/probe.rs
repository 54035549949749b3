//! The AMQP probe behind ping, check_running, check_port_connectivity and status: opens
//! a TCP connection to a listener, sends the AMQP 0-9-1 protocol header and reads the
//! broker's connection.start. A listener that answers with connection.start is an AMQP
//! broker that has booted (Warren binds its listeners only once its store is open).

use amq_protocol::frame::{AMQPFrame, parse_frame};
use amq_protocol::protocol::{AMQPClass, connection};
use amq_protocol::types::AMQPValue;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// What a listener told about itself in connection.start.
pub struct Answer {
    pub properties: Vec<(String, String)>,
}

impl Answer {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Probes one listener, waiting at most `timeout` for each step.
pub fn probe(addr: SocketAddr, timeout: Duration) -> Result<Answer, String> {
    let mut socket = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(timeout))
        .and_then(|()| socket.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    socket
        .write_all(b"AMQP\x00\x00\x09\x01")
        .map_err(|e| format!("cannot send the protocol header: {e}"))?;
    let mut header = [0u8; 7];
    socket
        .read_exact(&mut header)
        .map_err(|e| format!("no AMQP answer: {e}"))?;
    if &header[..4] == b"AMQP" {
        return Err(
            "the listener does not speak AMQP 0-9-1 (it answered with another protocol header)"
                .into(),
        );
    }
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
    if header[0] != 1 || size > 1 << 20 {
        return Err("the listener's answer is not an AMQP method frame".into());
    }
    let mut frame = header.to_vec();
    frame.resize(7 + size + 1, 0);
    socket
        .read_exact(&mut frame[7..])
        .map_err(|e| format!("incomplete AMQP answer: {e}"))?;
    match parse_frame(&frame[..]) {
        Ok((_, AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Start(s))))) => {
            let properties = s
                .server_properties
                .inner()
                .iter()
                .filter_map(|(k, v)| match v {
                    AMQPValue::LongString(s) => Some((
                        k.to_string(),
                        String::from_utf8_lossy(s.as_bytes()).into_owned(),
                    )),
                    _ => None,
                })
                .collect();
            Ok(Answer { properties })
        }
        _ => Err("the listener's answer is not connection.start".into()),
    }
}
