import metaworld_sdk


async def test_two_clients_see_each_other(world_server, ws_url, make_token):
    async with (
        metaworld_sdk.connect(ws_url, make_token("alice")) as a,
        metaworld_sdk.connect(ws_url, make_token("bob")) as b,
    ):
        await a.wait_for(lambda c: c.room == "lobby" and b.avatar_id in c.view, timeout=3)
        pose = a.pose.copy()
        pose[:, 0] += 0.5
        await a.send_pose(pose)

        def moved(c):
            r = c.view.get(a.avatar_id)
            return r is not None and r.pose is not None and abs(r.pose[0, 0] - pose[0, 0]) < 0.002

        await b.wait_for(moved, timeout=2)
