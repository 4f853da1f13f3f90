//! AddARPNeighbors.

use rtnetlink::packet_route::neighbour::NeighbourState;

use super::{nl, Neighbour, NetError, Network};

impl Network {
    /// Adds (or replaces) neighbour entries.
    pub async fn add_neighbours(&self, v: &[Neighbour]) -> Result<(), NetError> {
        let h = self.handle().await?;
        for n in v {
            let index = self.index_of(&n.device).await?;
            // Kata sends 0 for "permanent" (NUD_PERMANENT is 0x80).
            let state = if n.state == 0 {
                NeighbourState::Permanent
            } else {
                NeighbourState::from(n.state)
            };
            h.neighbours()
                .add(index, n.ip)
                .link_layer_address(&n.lladdr)
                .state(state)
                .replace()
                .execute()
                .await
                .map_err(nl(format!("add neighbour {} on {}", n.ip, n.device)))?;
        }
        Ok(())
    }
}
