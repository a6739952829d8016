"""The agent -> daemon API's client side (provisioner.daemon_api), shared by both clients."""

from provisioner.agent import buildstart
from provisioner.daemon_api import SAMPLES_PATH, USAGE_PATH, bearer, retryable, safe_url
from provisioner.runner import daemon_client


def test_both_clients_use_the_one_definition():
    assert daemon_client.SAMPLES_PATH is buildstart.SAMPLES_PATH is SAMPLES_PATH
    assert daemon_client.USAGE_PATH == USAGE_PATH
    assert daemon_client.URL_ENV == buildstart.URL_ENV and daemon_client.TOKEN_ENV == buildstart.TOKEN_ENV
    assert daemon_client.safe_url is buildstart.safe_url is safe_url


def test_which_answers_are_worth_another_try():
    assert [s for s in (200, 201, 400, 401, 403, 404, 408, 413, 429, 500, 503) if retryable(s)] == \
        [404, 408, 429, 500, 503]


def test_secrets_stay_out_of_urls_and_the_header_is_a_bearer():
    assert safe_url("http://u:pw@daemon:9108/v1/usage?x=1#f") == "http://daemon:9108/v1/usage"
    assert safe_url("https://daemon/v1") == "https://daemon/v1"
    assert bearer("t0k") == {"Authorization": "Bearer t0k"}
