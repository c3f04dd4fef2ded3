from django.urls import path

from providers.api import views

urlpatterns = [
    path("topups", views.TopUpListCreateApi.as_view(), name="topup-list"),
    path("topups/<str:topup_id>", views.TopUpDetailApi.as_view(), name="topup-detail"),
    path("topups/<str:topup_id>/refresh", views.TopUpRefreshApi.as_view(), name="topup-refresh"),
    path("topups/<str:topup_id>/cancel", views.TopUpCancelApi.as_view(), name="topup-cancel"),
    path(
        "topups/<str:topup_id>/callback", views.TopUpCallbackView.as_view(), name="topup-callback"
    ),
    path("withdrawals", views.WithdrawalListCreateApi.as_view(), name="withdrawal-list"),
    path(
        "withdrawals/<str:withdrawal_id>",
        views.WithdrawalDetailApi.as_view(),
        name="withdrawal-detail",
    ),
    path(
        "withdrawals/<str:withdrawal_id>/commit",
        views.WithdrawalCommitApi.as_view(),
        name="withdrawal-commit",
    ),
    path(
        "withdrawals/<str:withdrawal_id>/refresh",
        views.WithdrawalRefreshApi.as_view(),
        name="withdrawal-refresh",
    ),
    path(
        "withdrawals/<str:withdrawal_id>/cancel",
        views.WithdrawalCancelApi.as_view(),
        name="withdrawal-cancel",
    ),
    path("users/<str:user_id>/airtm/link", views.AirtmLinkApi.as_view(), name="user-airtm-link"),
]
