"""Mudbase's published Python SDK (mudbase==1.3.17), unchanged, against a running Switchboard.

Run by the end-to-end test `mudbase_sdk` (tests/e2e/mudbase_sdk.rs), which starts a server,
provisions two projects and passes them in the environment:

    SWITCHBOARD_URL, MB_PROJECT, MB_API_KEY, MB_FROM, MB_ALPHANUMERIC_FROM, MB_OTHER_PROJECT,
    MB_POOR_PROJECT, MB_POOR_API_KEY
"""

import datetime
import json
import os
import unittest
import urllib.request

import mudbase
from mudbase.exceptions import (
    BadRequestException,
    ForbiddenException,
    UnauthorizedException,
)

URL = os.environ["SWITCHBOARD_URL"]
PROJECT = os.environ["MB_PROJECT"]
API_KEY = os.environ["MB_API_KEY"]
FROM = os.environ["MB_FROM"]
ALPHANUMERIC_FROM = os.environ["MB_ALPHANUMERIC_FROM"]
OTHER_PROJECT = os.environ["MB_OTHER_PROJECT"]
POOR_PROJECT = os.environ["MB_POOR_PROJECT"]
POOR_API_KEY = os.environ["MB_POOR_API_KEY"]


def api(**config):
    return mudbase.MessagingApi(mudbase.ApiClient(mudbase.Configuration(host=URL, **config)))


def with_key(key=API_KEY):
    # The SDK sends X-API-Key on sends only; its history and stats calls send just the bearer
    # token, which Switchboard also takes as an API key. Configuring both covers every call.
    return api(api_key={"ApiKeyAuth": key}, access_token=key)


def key_header_only(key=API_KEY):
    return api(), {"X-API-Key": key}


def access_token():
    request = urllib.request.Request(
        URL + "/api/auth/token", method="POST", headers={"X-API-Key": API_KEY}
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 201
        return json.load(response)["data"]["accessToken"]


class SendHistoryStats(unittest.TestCase):
    def check_sent(self, result, recipients):
        self.assertIsInstance(result, mudbase.MessageSentResponse)
        self.assertTrue(result.success)
        self.assertEqual(result.data.type, "sms")
        self.assertEqual(result.data.recipients, recipients)
        self.assertEqual(result.data.success_count, recipients)
        self.assertEqual(result.data.failure_count, 0)
        self.assertIn(result.data.status, ("sent", "pending"))
        self.assertTrue(result.data.id.startswith("req_"))
        self.assertTrue(result.data.message_id.startswith("msg_"))

    def test_send_with_an_api_key(self):
        # The SDK sends several recipients as one comma-joined string.
        request = mudbase.SMSRequest(
            to="+18005550301,+18005550302", message="Hello from the SDK", var_from=FROM
        )
        result = with_key().send_sms(PROJECT, request)
        self.check_sent(result, 2)
        if result.data.status == "sent":
            self.assertIsInstance(result.data.sent_at, datetime.datetime)

    def test_send_from_an_alphanumeric_sender(self):
        request = mudbase.SMSRequest(
            to="+18005550308", message="From a name", var_from=ALPHANUMERIC_FROM
        )
        self.check_sent(with_key().send_sms(PROJECT, request), 1)
        with self.assertRaises(BadRequestException) as caught:
            with_key().send_sms(
                PROJECT,
                mudbase.SMSRequest(to="+18005550308", message="x", var_from="ACMEACMEACME"),
            )
        self.assertEqual(json.loads(caught.exception.body)["error"]["code"], "VALIDATION_ERROR")

    def test_send_with_a_jwt(self):
        request = mudbase.SMSRequest(to="+18005550303", message="Hello by token")
        result = api(access_token=access_token()).send_sms(PROJECT, request)
        self.check_sent(result, 1)

    def test_history_with_both_schemes(self):
        with_key().send_sms(PROJECT, mudbase.SMSRequest(to="+18005550304", message="for history"))
        for client in (with_key(), api(access_token=access_token())):
            history = client.get_message_history(PROJECT, type="sms", page=1, limit=5)
            self.assertIsInstance(history, mudbase.MessageHistoryResponse)
            self.assertTrue(history.success)
            self.assertGreaterEqual(len(history.data.messages), 1)
            self.assertLessEqual(len(history.data.messages), 5)
            for entry in history.data.messages:
                self.assertEqual(entry.type, "sms")
                self.assertIsNone(entry.title)
                self.assertIsNone(entry.subject)
                self.assertIn(entry.status, ("sent", "failed", "pending"))
                self.assertIsInstance(entry.recipients, int)
            self.assertEqual(history.data.pagination.page, 1)
            self.assertEqual(history.data.pagination.limit, 5)
            self.assertGreaterEqual(history.data.pagination.total, 1)
            pending = client.get_message_history(PROJECT, status="pending")
            self.assertTrue(all(m.status == "pending" for m in pending.data.messages))
        # The SDK's per-call headers carry an X-API-Key as well.
        client, headers = key_header_only()
        history = client.get_message_history(PROJECT, _headers=headers)
        self.assertGreaterEqual(history.data.pagination.total, 1)
        with self.assertRaises(UnauthorizedException):
            client.get_message_history(PROJECT)

    def test_stats_with_the_sdks_date_forms(self):
        with_key().send_sms(PROJECT, mudbase.SMSRequest(to="+18005550305", message="for stats"))
        now = datetime.datetime.now(datetime.timezone.utc)
        aware_start = now - datetime.timedelta(days=1)
        naive_start = aware_start.replace(tzinfo=None)
        for client in (with_key(), api(access_token=access_token())):
            # Aware datetimes go out as 2024-01-01T00:00:00.000000+0000, naive ones with no offset.
            for start in (aware_start, naive_start):
                stats = client.get_message_stats(
                    PROJECT, start_date=start, end_date=now + datetime.timedelta(minutes=1)
                )
                self.assertIsInstance(stats, mudbase.MessageStatsResponse)
                data = stats.data
                self.assertGreaterEqual(data.total_messages, 1)
                self.assertEqual(data.by_type.push, 0)
                self.assertEqual(data.by_type.email, 0)
                self.assertEqual(data.by_type.sms, data.total_messages)
                self.assertEqual(
                    data.by_status.sent + data.by_status.failed + data.by_status.pending,
                    data.total_messages,
                )
                self.assertIsInstance(data.period.start_date, datetime.datetime)
            stats = client.get_message_stats(PROJECT)
            self.assertGreaterEqual(stats.data.total_messages, 1)
        client, headers = key_header_only()
        self.assertGreaterEqual(client.get_message_stats(PROJECT, _headers=headers).data.total_messages, 1)


class Errors(unittest.TestCase):
    def test_another_project_is_forbidden(self):
        with self.assertRaises(ForbiddenException) as caught:
            with_key().send_sms(OTHER_PROJECT, mudbase.SMSRequest(to="+18005550306", message="x"))
        self.assertEqual(caught.exception.status, 403)
        body = json.loads(caught.exception.body)
        self.assertFalse(body["success"])
        self.assertEqual(body["error"]["code"], "FORBIDDEN")
        with self.assertRaises(ForbiddenException):
            with_key().get_message_history(OTHER_PROJECT)

    def test_insufficient_credits_is_forbidden(self):
        # The platform documents 400, 401 and 403; the SDK raises its own exception for each.
        with self.assertRaises(ForbiddenException) as caught:
            with_key(POOR_API_KEY).send_sms(
                POOR_PROJECT, mudbase.SMSRequest(to="+18005550307", message="no credits")
            )
        self.assertEqual(caught.exception.status, 403)
        body = json.loads(caught.exception.body)
        self.assertFalse(body["success"])
        self.assertEqual(body["error"]["code"], "INSUFFICIENT_CREDITS")
        history = with_key(POOR_API_KEY).get_message_history(POOR_PROJECT)
        self.assertEqual(history.data.pagination.total, 0, "nothing was stored")

    def test_bad_credentials_are_unauthorized(self):
        with self.assertRaises(UnauthorizedException):
            with_key(API_KEY.split(":")[0] + ":sk_wrong").get_message_stats(PROJECT)
        with self.assertRaises(UnauthorizedException):
            api(access_token="not.a.token").get_message_history(PROJECT)

    def test_bad_input_is_a_bad_request(self):
        with self.assertRaises(BadRequestException) as caught:
            with_key().send_sms(PROJECT, mudbase.SMSRequest(to="feed generate", message="x"))
        body = json.loads(caught.exception.body)
        self.assertEqual(body["error"]["code"], "VALIDATION_ERROR")
        self.assertIn("to", body["error"]["message"])
        with self.assertRaises(BadRequestException):
            with_key().get_message_history(PROJECT, status="delivered")


if __name__ == "__main__":
    unittest.main(verbosity=2)
