//! Devplane connections: TLS accept, WebSocket upgrade, then a thin pump between
//! the socket and the plane task (text frames in, text frames out).

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::plane::PlaneEvent;

/// Accept connections forever; each gets a connection id and its own task.
pub(super) async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    events: mpsc::Sender<PlaneEvent>,
) {
    let mut next_id = 1u64;
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let conn = next_id;
        next_id += 1;
        let acceptor = acceptor.clone();
        let events = events.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(conn, tcp, acceptor, events.clone()).await {
                tracing::info!(conn, %peer, "connection ended: {e}");
            }
            let _ = events.send(PlaneEvent::Closed { conn }).await;
        });
    }
}

async fn serve(
    conn: u64,
    tcp: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    events: mpsc::Sender<PlaneEvent>,
) -> anyhow::Result<()> {
    let tls = acceptor.accept(tcp).await?;
    let mut ws = tokio_tungstenite::accept_async(tls).await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    events.send(PlaneEvent::Connected { conn, tx }).await?;
    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                None => return Ok(()),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(WsMessage::Text(text))) => {
                    events.send(PlaneEvent::Frame { conn, text: text.as_str().to_owned() }).await?;
                }
                Some(Ok(WsMessage::Close(_))) => return Ok(()),
                Some(Ok(WsMessage::Ping(_))) => ws.flush().await?,
                Some(Ok(_)) => {}
            },
            out = rx.recv() => match out {
                Some(text) => ws.send(WsMessage::text(text)).await?,
                // The plane dropped this connection.
                None => {
                    let _ = ws.close(None).await;
                    return Ok(());
                }
            },
        }
    }
}
