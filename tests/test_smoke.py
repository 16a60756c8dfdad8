def test_health(api):
    r = api.get("/api/settings/health")
    assert r.status == 200 and r.data["database"] == "connected"
